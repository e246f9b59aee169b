// kaleidoscope: a noise field folded into symmetry-order mirrored wedges, drifting with the motion clock; low bands drive the coarse pattern and high bands the fine one, loudness sets brightness and zooms in, onsets flash the edges, spin rotates it, centroid shifts hue.
#include "common.glsl"

vec4 shade(vec2 p) {
    float r = length(p);
    float w = TAU / u_symmetry;
    float a = mod(atan(p.y, p.x) + 0.2 * u_spin, w);
    a = abs(a - 0.5 * w);
    vec2 q = r * vec2(cos(a), sin(a)) * (1.2 + u_detail) * (1.25 - 0.4 * u_level);
    float n1 = vnoise(2.0 * q + vec2(0.7 * u_phase, 3.1 * u_seed));
    float n2 = vnoise(6.0 * q - vec2(0.0, 1.1 * u_phase));
    float n3 = vnoise(14.0 * q + vec2(2.0 * u_phase));
    float v = (0.2 + bandf(0.1)) * n1 + 0.9 * bandf(0.5) * n2 + 0.7 * bandf(0.9) * n3;
    float edges = stroke(abs(fract(3.0 * v) - 0.5), 0.18 * u_line_width);
    float i = (smoothstep(0.15, 0.9, v) + 0.5 * edges * (0.3 + u_flash)) * (0.3 + 0.7 * u_level) * smoothstep(1.4, 0.8, r);
    vec3 col = palette(v + u_centroid + u_hue);
    return emit(col * i + vec3(0.6 * u_flash * edges), i);
}
