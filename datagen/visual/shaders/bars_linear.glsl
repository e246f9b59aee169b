// bars_linear: a mirrored spectrum analyser; bar heights are the band levels (low bands left), loudness brightens the bars, onsets light the bar tips, the beat pulse thickens the centre line, centroid shifts hue.
#include "common.glsl"

vec4 shade(vec2 p) {
    float n = 16.0;
    float x = clamp(p.x * 0.5 + 0.5, 0.0, 0.9999);
    float idx = floor(x * n);
    float cx = (idx + 0.5) / n;
    float h = 0.03 + 0.92 * bandf(cx);
    float edge = abs(fract(x * n) - 0.5) * 2.0;                  // 0 at a bar's centre, 1 at its edges
    float inbar = 1.0 - smoothstep(0.55 * u_line_width, 0.55 * u_line_width + 0.2, edge);
    float y = abs(p.y);
    float body = (1.0 - smoothstep(h - px(), h + px(), y)) * inbar;
    float tip = blob(y - h, wpx(0.04)) * inbar * u_flash;
    float base = stroke(y, wpx(0.01 + 0.05 * u_pulse)) * u_level;
    vec3 col = palette(0.6 * cx + u_centroid + u_hue) * (0.45 + 0.55 * y / h);
    float i = body * (0.35 + 0.65 * u_level) + tip;
    return emit(col * i + vec3(base + tip), i + base);
}
