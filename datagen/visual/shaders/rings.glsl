// rings: concentric rings flow outward with the motion clock and spread wider with loudness; ring k's width and brightness follow band k, high bands wobble them with the symmetry order, onsets flash them white, centroid shifts hue.
#include "common.glsl"

vec4 shade(vec2 p) {
    float r = length(p);
    float a = atan(p.y, p.x);
    float wobble = 0.08 * bandf(0.85) * sin(u_symmetry * a + 2.0 * u_spin);
    vec3 col = vec3(0.0);
    float cov = 0.0;
    for (int k = 0; k < 8; k++) {
        float fk = float(k);
        float life = fract(fk / 8.0 + 0.35 * u_phase);
        float rk = life * (0.5 + 0.9 * u_level);
        float b = u_bands[k];
        float w = wpx((0.01 + 0.05 * b) * u_line_width);
        float d = abs(r + wobble * life - rk);
        float i = (stroke(d, w) + 0.35 * blob(d, 3.0 * w)) * (0.2 + 1.2 * b) * smoothstep(0.0, 0.15, life) * (1.0 - life);
        col += palette(fk / 8.0 + u_centroid + u_hue) * i;
        cov += i;
    }
    col += vec3(0.8) * u_flash * cov;
    return emit(col / max(cov, 1e-4), cov * (0.4 + 0.8 * u_level));
}
