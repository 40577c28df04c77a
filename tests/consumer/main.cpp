// Uses the installed helix: tables, rotation and a check of one value against the formula,
// on the CPU or (CONSUMER_DEVICE) on a GPU; without that GPU it says [SKIP] and exits 77,
// which ctest reports as skipped (never as passed).
#include <helix/helix.h>

#include <cmath>
#include <cstdio>

#ifndef CONSUMER_DEVICE
#define CONSUMER_DEVICE helix::Device::CPU
#endif

int main() {
    const helix::Device device = CONSUMER_DEVICE;
    std::string why;
    if (!helix::device_available(device, &why)) {
        std::printf("consumer: [SKIP] no %s device: %s\n", helix::to_string(device).c_str(), why.c_str());
        return 77;
    }
    const helix::SinusoidalEmbeddings emb(64, 512.0, true);
    helix::Tensor q({1, 2, 3, 64}), k({1, 2, 10, 64});
    q.at({0, 1, 2, 0}) = 1.0f;
    const helix::RotaryTables tables = emb.forward(10, device);
    const auto [q_rot, k_rot] = helix::apply_rotary_pos_emb(q.to(device), k.to(device), tables.freqs, tables.scale);
    // q row 2 sits at table row 9: q'[0] = cos(9 * inv_freq[0]) * scale[9, 0], inv_freq[0] = 1.
    const double expected = std::cos(9.0) * tables.scale.to(helix::Device::CPU).at({9, 0});
    const double got = q_rot.to(helix::Device::CPU).at({0, 1, 2, 0});
    std::printf("consumer (%s): q'[0, 1, 2, 0] = %.7f, expected %.7f\n", helix::to_string(device).c_str(), got, expected);
    return std::fabs(got - expected) < 1e-5 ? 0 : 1;
}
