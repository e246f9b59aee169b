// particles: a fountain of sparks streaming out of the centre at a speed set by loudness (motion clock), each sized, placed and brightened by its band; every strong onset fires a fresh burst of sparks in new directions; centroid shifts hue.
#include "common.glsl"

// Spark positions are integrated on the CPU (datagen/visual/points.py): x, y, size, intensity.
// The first 32 are fountain sparks, the last 32 the burst of the latest onset.
uniform vec4 u_points[64];

vec4 shade(vec2 p) {
    float cov = 0.0;
    float hue = 0.0;
    for (int k = 0; k < 64; k++) {
        vec4 q = u_points[k];
        float w = wpx(q.z);
        vec2 d = p - q.xy;
        float f = max(1.0 - dot(d, d) / (4.0 * w * w), 0.0);   // compact, blob-like falloff
        float i = f * f * f * q.w * (k < 32 ? 1.0 : 1.5);
        hue += i * (k < 32 ? float(k) / 32.0 : 0.5);
        cov += i;
    }
    vec3 col = palette(hue / max(cov, 1e-4) + u_centroid + u_hue);
    return emit(col, cov * (0.5 + 0.7 * u_level));
}
