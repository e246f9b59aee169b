// particles: a fountain of sparks streaming out of the centre at a speed set by loudness (motion clock), each sized and coloured by its band; every strong onset fires a fresh burst of sparks in new directions; centroid shifts hue.
#include "common.glsl"

vec4 shade(vec2 p) {
    vec3 col = vec3(0.0);
    float cov = 0.0;
    float burst_r = 1.0 - exp(-4.0 * u_burst_age);
    float burst_fade = exp(-2.5 * u_burst_age);
    for (int k = 0; k < 32; k++) {
        float fk = float(k);
        float b = u_bands[k % 8];
        float cyc = 0.8 * u_phase + hash1(fk + 97.0 * u_seed);
        float life = fract(cyc);
        float ang = TAU * hash2(vec2(fk, floor(cyc)));
        vec2 pos = life * (0.35 + 0.8 * b) * vec2(cos(ang), sin(ang));
        float size = wpx((0.015 + 0.05 * b) * u_line_width);
        float i1 = blob(length(p - pos), size) * (1.0 - life) * (0.1 + 1.6 * b);
        float ang2 = TAU * hash2(vec2(fk + 1000.0, u_burst_count));
        vec2 pos2 = burst_r * (0.5 + 0.5 * hash1(fk + 7.0 * u_burst_count)) * vec2(cos(ang2), sin(ang2));
        float i2 = blob(length(p - pos2), wpx((0.015 + 0.04 * b) * u_line_width)) * burst_fade * (0.1 + 1.4 * b);
        col += palette(fk / 32.0 + u_centroid + u_hue) * i1 + palette(0.5 + u_centroid + u_hue) * 1.5 * i2;
        cov += i1 + i2;
    }
    return emit(col / max(cov, 1e-4), cov * (0.5 + 0.7 * u_level));
}
