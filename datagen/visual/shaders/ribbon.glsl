// ribbon: three glowing ribbons across the frame, each a sum of sines whose amplitudes are the bands (band k -> harmonic k+1), scrolling with the motion clock; loudness sets their width and brightness, onsets thicken them, centroid shifts hue.
#include "common.glsl"

vec4 shade(vec2 p) {
    vec3 col = vec3(0.0);
    float cov = 0.0;
    for (int j = 0; j < 3; j++) {
        float fj = float(j);
        float y = 0.5 * (fj - 1.0);
        for (int k = 0; k < 8; k++) {
            float fk = float(k);
            y += u_bands[k] * 0.28 / (1.0 + 0.35 * fk) * sin(p.x * (fk + 1.0) * 1.6 * u_detail + u_phase * (1.0 + 0.4 * fk) + 1.7 * fj + TAU * u_seed);
        }
        float w = wpx((0.008 + 0.03 * u_level + 0.04 * u_flash) * u_line_width);
        float d = abs(p.y - y);
        float i = stroke(d, w) + 0.35 * blob(d, 4.0 * w);
        col += palette(0.3 * p.x + 0.33 * fj + u_centroid + u_hue) * i;
        cov += i;
    }
    return emit(col / max(cov, 1e-4), cov * (0.4 + 0.8 * u_level));
}
