// metaballs: six blobs orbiting the centre with the motion clock, merging where they meet; blob k's orbit radius and size follow its band, loudness grows them all, the beat pulse inflates them, onsets flash the rims, centroid shifts hue.
#include "common.glsl"

vec4 shade(vec2 p) {
    float field = 0.0;
    float hue = 0.0;
    for (int k = 0; k < 6; k++) {
        float fk = float(k);
        float b = bandf(fk / 5.0);
        float dir = (k % 2 == 0) ? 1.0 : -1.0;
        float ang = dir * u_phase * (0.5 + 0.15 * fk) + fk * TAU / 6.0 + 0.3 * u_spin;
        vec2 c = (0.12 + 0.6 * b) * vec2(cos(ang), sin(ang));
        float rad = (0.05 + 0.12 * u_level) * (0.5 + 1.0 * b) * (1.0 + 0.35 * u_pulse);
        float f = rad * rad / (dot(p - c, p - c) + 1e-4);
        field += f;
        hue += f * fk / 6.0;
    }
    hue /= max(field, 1e-4);
    float inside = smoothstep(0.9, 1.1, field);
    float rim = stroke(abs(field - 1.0), 0.35 * u_line_width);
    float i = inside * (0.35 + 0.65 * u_level) + rim * (0.4 + u_flash);
    vec3 col = palette(hue + 0.2 * min(field, 3.0) + u_centroid + u_hue);
    return emit(col * i + vec3(u_flash * rim), i);
}
