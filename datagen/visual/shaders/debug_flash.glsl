// debug_flash: the whole frame flashes white on each onset (the flash decays within ~0.1 s).
#include "common.glsl"

vec4 shade(vec2 p) {
    return emit(vec3(1.0), u_flash);
}
