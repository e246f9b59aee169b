// starfield: stars rushing toward the viewer at a speed set by loudness (motion clock); each star's brightness and size follow the band of its cell, onsets flash a glow at the vanishing point, spin rolls the field, centroid tints the stars.
#include "common.glsl"

vec4 shade(vec2 p) {
    vec3 col = vec3(0.0);
    float cov = 0.0;
    vec2 q0 = rot2(0.1 * u_spin) * p;
    for (int l = 0; l < 4; l++) {
        float fl = float(l);
        float depth = fract(fl / 4.0 + 0.3 * u_phase);
        float scale = mix(7.0, 1.2, depth) * u_detail;
        vec2 q = q0 * scale + vec2(7.3 * fl, 3.1 * fl) + 11.0 * u_seed;
        vec2 cell = floor(q);
        vec2 off = hash22(cell + 31.0 * fl) - 0.5;
        float h = hash2(cell + 57.0 * fl);
        float b = u_bands[int(h * 7.999)];
        float d = length(fract(q) - 0.5 - 0.7 * off);
        float fade = smoothstep(0.0, 0.3, depth) * smoothstep(1.0, 0.85, depth);
        float present = step(0.35, hash2(cell + 91.0 * fl));           // about two cells in three hold a star
        float i = present * blob(d, max((0.05 + 0.12 * b) * u_line_width, 1.5 * px() * scale)) * fade * (0.2 + 1.5 * b);
        col += palette(h + u_centroid + u_hue) * i;
        cov += i;
    }
    float glow = u_flash * blob(length(p), 0.35);
    return emit(col / max(cov, 1e-4) * cov * (0.5 + 0.6 * u_level) + vec3(glow), cov * (0.5 + 0.6 * u_level) + glow);
}
