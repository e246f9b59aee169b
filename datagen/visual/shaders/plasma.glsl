// plasma: interfering sine fields whose spatial frequencies are set by the bands (band pairs -> waves), flowing with the motion clock; loudness sets brightness, the beat pulse sends ripples from the centre, onsets add a white bloom, centroid shifts the palette.
#include "common.glsl"

vec4 shade(vec2 p) {
    float r = length(p);
    float d = u_detail;
    float v = sin(p.x * (2.0 + 7.0 * bandf(0.0)) * d + 1.7 * u_phase)
            + sin(p.y * (2.0 + 7.0 * bandf(0.3)) * d - 1.3 * u_phase)
            + sin((p.x + p.y) * (2.0 + 9.0 * bandf(0.6)) * d + u_spin)
            + sin(r * (3.0 + 12.0 * bandf(0.95)) * d - 2.0 * u_phase)
            + 1.5 * u_pulse * sin(18.0 * r - 6.0 * u_phase);
    float i = pow(0.5 + 0.5 * sin(v * 1.6), 1.5) * (0.25 + 0.75 * u_level);
    float bloom = u_flash * blob(r, 0.6);
    vec3 col = palette(0.15 * v + u_centroid + u_hue);
    return emit(col * i + vec3(bloom), i + bloom);
}
