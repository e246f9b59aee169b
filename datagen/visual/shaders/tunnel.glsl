// tunnel: a flight down a striped tunnel; travel speed is loudness (motion clock), each depth's brightness is a band (low bands near, high bands far), the symmetry order sets the stripes, spin twists it, onsets flash the far end, centroid shifts hue.
#include "common.glsl"

vec4 shade(vec2 p) {
    float r = max(length(p), 1e-3);
    float a = atan(p.y, p.x);
    float depth = 0.3 / r;
    float u = depth + 1.5 * u_phase;
    float v = a / TAU * u_symmetry + 0.3 * u_spin + 0.15 * depth;
    float stripes = smoothstep(0.2, 0.35, abs(fract(v) - 0.5));
    float rings = stroke(abs(fract(u * 1.5 * u_detail) - 0.5), 0.12 * u_line_width);
    float b = bandf(clamp(1.1 - r, 0.0, 1.0));
    float fog = smoothstep(0.02, 0.3, r);
    float i = (0.15 + 0.8 * stripes + 0.9 * rings) * (0.1 + 1.6 * b) * fog * (0.4 + 0.6 * u_level);
    float flash = u_flash * blob(r, 0.3);
    vec3 col = palette(0.15 * depth + 0.5 * b + u_centroid + u_hue);
    return emit(col * i + vec3(flash), i + flash);
}
