// bars_radial: spectrum bars around a circle, the band pattern mirrored symmetry-order times; bar lengths are band levels, the ring turns with the spin clock, the beat pulse swells the inner circle, onsets flash the tips, centroid shifts hue.
#include "common.glsl"

vec4 shade(vec2 p) {
    float r = length(p);
    float a = atan(p.y, p.x) + 0.5 * u_spin;
    float n = 48.0;
    float s = fract(a / TAU) * n;
    float idx = floor(s);
    float x = tri((idx + 0.5) / n * u_symmetry * 0.5);           // band position, mirrored per sector
    float r0 = 0.22 + 0.12 * u_pulse;
    float len = 0.04 + 0.68 * bandf(x);
    float edge = abs(fract(s) - 0.5) * 2.0;
    float inbar = 1.0 - smoothstep(0.5 * u_line_width, 0.5 * u_line_width + 0.25, edge);
    float body = smoothstep(r0 - px(), r0 + px(), r) * (1.0 - smoothstep(r0 + len - px(), r0 + len + px(), r)) * inbar;
    float tip = blob(r - r0 - len, wpx(0.04)) * inbar * u_flash;
    float circle = stroke(abs(r - r0 + 0.03), wpx(0.012 * u_line_width)) * (0.3 + u_pulse);
    vec3 col = palette(x * 0.7 + u_centroid + u_hue);
    float i = body * (0.3 + 0.7 * u_level) + tip + circle * u_level;
    return emit(col * (body * (0.3 + 0.7 * u_level) + circle * u_level) + vec3(tip), i);
}
