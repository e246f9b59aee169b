// output: the frame as it is read back. Copies the post pass's float result into the 8-bit RGBA target,
// flipped vertically, so that glReadPixels' bottom-up rows arrive top row first and the CPU copies nothing.
// The 8-bit store rounds to nearest, as the float-to-ubyte readback conversion it replaces did.
uniform sampler2D u_frame;  // post pass output (float)

out vec4 f_color;

void main() {
    ivec2 size = textureSize(u_frame, 0);
    ivec2 ij = ivec2(gl_FragCoord.xy);
    f_color = vec4(texelFetch(u_frame, ivec2(ij.x, size.y - 1 - ij.y), 0).rgb, 1.0);
}
