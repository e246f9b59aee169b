// common: uniforms and helpers shared by every primitive (each primitive includes this file).
// All per-frame inputs are integrated on the CPU (datagen/visual/drive.py): no clock, no randomness here.

uniform vec2 u_res;          // framebuffer size in pixels
uniform float u_level;       // loudness envelope in [0, 1] (0 in silence)
uniform float u_bands[8];    // band-level envelopes in [0, 1], low to high
uniform float u_flash;       // onset flash envelope in [0, 1]
uniform float u_centroid;    // smoothed spectral centroid in [0, 1] (held in silence)
uniform float u_pulse;       // beat pulse: 1 on the beat, decaying over the beat (x loudness)
uniform float u_downbeat;    // bar-start envelope
uniform float u_phase;       // motion clock: integral of loudness (frozen in silence)
uniform float u_spin;        // accumulated rotation clock (radians, frozen in silence)
uniform float u_burst_age;   // motion-clock time since the last strong onset
uniform float u_burst_count; // number of bursts so far (new directions per burst)
uniform float u_dominant;    // index of the loudest band / 7
uniform float u_gain;        // picture gain from loudness (drive.brightness_gain), used by layer_main

// Style (clip-level, from the plan) and per-layer constants.
uniform vec3 u_pal_a;
uniform vec3 u_pal_b;
uniform vec3 u_pal_c;
uniform vec3 u_pal_d;
uniform float u_symmetry;    // symmetry order (3..12)
uniform float u_line_width;  // line-width scale
uniform float u_detail;      // spatial-frequency scale
uniform float u_hue;         // per-layer palette offset
uniform float u_seed;        // per-layer constant in [0, 1] (a plan value, not a random draw)

const float TAU = 6.28318530718;

// Band level at a continuous position x in [0, 1] (0 = lowest band), linear between bands.
float bandf(float x) {
    float f = clamp(x, 0.0, 1.0) * 7.0;
    int i = int(floor(f));
    int j = min(i + 1, 7);
    return mix(u_bands[i], u_bands[j], f - float(i));
}

// Cosine palette: a + b * cos(2 pi (c t + d)).
vec3 palette(float t) {
    return u_pal_a + u_pal_b * cos(TAU * (u_pal_c * t + u_pal_d));
}

vec3 hsv2rgb(vec3 c) {
    vec3 k = clamp(abs(mod(c.x * 6.0 + vec3(0.0, 4.0, 2.0), 6.0) - 3.0) - 1.0, 0.0, 1.0);
    return c.z * mix(vec3(1.0), k, c.y);
}

mat2 rot2(float a) {
    float c = cos(a), s = sin(a);
    return mat2(c, s, -s, c);
}

// Integer hashing (avalanche mix of 32-bit words): identical on every GPU.
uint mix32(uint x) {
    x ^= x >> 16u; x *= 0x7feb352du;
    x ^= x >> 15u; x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}
float hash1(float n) { return float(mix32(uint(int(floor(n)) + 0x40000000)) >> 8u) / 16777216.0; }
float hash2(vec2 c) {
    ivec2 i = ivec2(floor(c));
    return float(mix32(uint(i.x + 0x40000000) ^ mix32(uint(i.y + 0x20000000))) >> 8u) / 16777216.0;
}
vec2 hash22(vec2 c) { return vec2(hash2(c), hash2(c + vec2(311.0, 173.0))); }

// Smooth value noise in [0, 1] and a few octaves of it.
float vnoise(vec2 p) {
    vec2 i = floor(p), f = fract(p);
    vec2 u = f * f * (3.0 - 2.0 * f);
    float a = hash2(i), b = hash2(i + vec2(1.0, 0.0)), c = hash2(i + vec2(0.0, 1.0)), d = hash2(i + vec2(1.0, 1.0));
    return mix(mix(a, b, u.x), mix(c, d, u.x), u.y);
}
float fbm(vec2 p) {
    float s = 0.0, a = 0.5;
    for (int k = 0; k < 4; k++) { s += a * vnoise(p); p = p * 2.03 + vec2(17.1, 9.2); a *= 0.5; }
    return s / 0.9375;
}

// One pixel in the [-1, 1] frame coordinates, and a width never thinner than ~1.5 pixels.
float px() { return 2.0 / u_res.y; }
float wpx(float w) { return max(w, 1.5 * px()); }

// Line profile (1 on the line, 0 beyond w) and a soft gaussian blob.
float stroke(float d, float w) { return 1.0 - smoothstep(0.3 * w, w, d); }
float blob(float d, float w) { return exp(-(d * d) / (w * w)); }
float tri(float t) { return abs(fract(t) * 2.0 - 1.0); }

// Distance from p to the segment ab.
float seg_dist(vec2 p, vec2 a, vec2 b) {
    vec2 pa = p - a, ba = b - a;
    float h = clamp(dot(pa, ba) / max(dot(ba, ba), 1e-8), 0.0, 1.0);
    return length(pa - ba * h);
}

// Premultiplied colour with coverage: intensity i of colour c.
vec4 emit(vec3 c, float i) { return vec4(c * i, clamp(i, 0.0, 1.0)); }
