// layer_main: the fragment entry point appended to every primitive: augmentation transform, loudness gate, blend output.
uniform mat2 u_xform;     // flips, zoom, static rotation and spin-coupled rotation (plan augmentation), low-band size
uniform float u_opacity;  // layer opacity
uniform int u_multiply;   // 1: output the multiply-blend factor (1 - a + rgb)

in vec2 v_uv;
out vec4 f_color;

void main() {
    vec2 p = u_xform * (v_uv * 2.0 - 1.0);
    vec4 c = max(shade(p), vec4(0.0));
    // Everything is gated by the loudness envelope (silence fades every layer to nothing) and
    // scaled by the loudness gain (drive.brightness_gain) on top of what each primitive does with it.
    c *= u_opacity * smoothstep(0.0, 0.12, u_level) * u_gain;
    f_color = (u_multiply == 1) ? vec4(vec3(1.0 - min(c.a, 1.0)) + c.rgb, 1.0) : c;
}
