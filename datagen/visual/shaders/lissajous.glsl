// lissajous: an oscilloscope Lissajous trace; its x/y frequency ratio jumps with the strongest low and high bands, its phase advances with the motion clock, loudness sets its size, onsets brighten the trace, centroid shifts hue.
#include "common.glsl"

vec4 shade(vec2 p) {
    float fa = 1.0 + floor(4.0 * bandf(0.15) + 0.5);
    float fb = 2.0 + floor(4.0 * bandf(0.8) + 0.5);
    float amp = 0.2 + 0.7 * u_level;
    float dmin = 1e3;
    float smin = 0.0;
    vec2 prev = amp * vec2(sin(u_phase), sin(0.5 * u_spin));
    for (int k = 1; k <= 72; k++) {
        float s = TAU * float(k) / 72.0;
        vec2 cur = amp * vec2(sin(fa * s + u_phase), sin(fb * s + 0.5 * u_spin));
        float d = seg_dist(p, prev, cur);
        if (d < dmin) { dmin = d; smin = s; }
        prev = cur;
    }
    float w = wpx(0.012 * u_line_width * (1.0 + u_flash));
    float i = (stroke(dmin, w) + 0.4 * blob(dmin, 4.0 * w)) * (0.4 + 0.6 * u_level + 0.8 * u_flash);
    vec3 col = palette(smin / TAU * 0.5 + u_centroid + u_hue);
    return emit(col * i, i);
}
