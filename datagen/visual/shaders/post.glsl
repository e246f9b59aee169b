// post: hue rotation of the composite, the band-driven colour temperature and feedback trails (max of the new frame and the decayed previous output).
uniform sampler2D u_comp;   // composite of the layers (float)
uniform sampler2D u_prev;   // previous output frame (float)
uniform mat3 u_hue_mat;     // rotation about the grey axis
uniform float u_decay;      // per-frame trail decay (0 = no trails)
uniform float u_warmth;     // colour temperature in [-1, 1] from the band balance (drive.warmth): > 0 warm, < 0 cool

out vec4 f_color;

void main() {
    ivec2 ij = ivec2(gl_FragCoord.xy);
    vec3 c = clamp(u_hue_mat * clamp(texelFetch(u_comp, ij, 0).rgb, 0.0, 1.0), 0.0, 1.0);
    // Low bands warm the whole picture, high bands cool it, the same way in every clip (a mapping a viewer can learn);
    // the tint keeps the luma (Rec. 601), so brightness stays loudness's.
    vec3 tint = vec3(1.0 + 0.6 * u_warmth, 1.0 + 0.1 * u_warmth, 1.0 - 0.6 * u_warmth);
    c = clamp(c * tint / dot(tint, vec3(0.299, 0.587, 0.114)), 0.0, 1.0);
    vec3 prev = texelFetch(u_prev, ij, 0).rgb;
    f_color = vec4(max(c, prev * u_decay), 1.0);
}
