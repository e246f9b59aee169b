// debug_disc: a disc at the centre whose radius is the loudness and whose colour is the dominant band (red = lowest ... violet = highest).
#include "common.glsl"

vec4 shade(vec2 p) {
    float rad = 0.9 * u_level;
    float inside = 1.0 - smoothstep(rad - px(), rad + px(), length(p));
    return emit(hsv2rgb(vec3(0.8 * u_dominant, 1.0, 1.0)), inside);
}
