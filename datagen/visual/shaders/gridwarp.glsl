// gridwarp: a line grid bent by waves whose amplitudes are the bands, scrolling with the motion clock; the beat pulse and onsets punch a bulge out from the centre, loudness sets line brightness, the symmetry order sets the grid density, centroid shifts hue.
#include "common.glsl"

vec4 shade(vec2 p) {
    float r = length(p);
    float scale = (1.5 + 0.25 * u_symmetry) * u_detail;
    vec2 q = p * scale;
    vec2 disp = vec2(0.0);
    for (int k = 0; k < 8; k++) {
        float fk = float(k);
        disp += u_bands[k] * 0.35 * vec2(sin(q.y * (0.5 + 0.45 * fk) + u_phase * (1.0 + 0.3 * fk)),
                                         cos(q.x * (0.4 + 0.5 * fk) - u_phase * (0.8 + 0.2 * fk)));
    }
    vec2 bulge = (0.8 * u_pulse + 1.2 * u_flash) * exp(-4.0 * r * r) * p / max(r, 1e-3);
    q += disp - scale * 0.4 * bulge + vec2(0.0, 0.5 * u_phase);
    vec2 g = abs(fract(q) - 0.5);
    float d = (0.5 - max(g.x, g.y)) / scale;                      // distance to the nearest grid line
    float line = stroke(d, wpx(0.012 * u_line_width));
    float i = line * (0.35 + 0.65 * u_level + 0.5 * u_flash);
    vec3 col = palette(0.2 * length(disp) + 0.3 * r + u_centroid + u_hue);
    return emit(col * i, i);
}
