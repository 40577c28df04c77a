// Uses the installed helix: tables, rotation and a check of one value against the formula.
#include <helix/helix.h>

#include <cmath>
#include <cstdio>

int main() {
    const helix::SinusoidalEmbeddings emb(64, 512.0, true);
    const helix::Tensor q({1, 2, 3, 64}), k({1, 2, 10, 64});
    q.at({0, 1, 2, 0}) = 1.0f;
    const helix::RotaryTables tables = emb.forward(k);
    const auto [q_rot, k_rot] = helix::apply_rotary_pos_emb(q, k, tables.freqs, tables.scale);
    // q row 2 sits at table row 9: q'[0] = cos(9 * inv_freq[0]) * scale[9, 0], inv_freq[0] = 1.
    const double expected = std::cos(9.0) * tables.scale.at({9, 0});
    const double got = q_rot.at({0, 1, 2, 0});
    std::printf("consumer: q'[0, 1, 2, 0] = %.7f, expected %.7f\n", got, expected);
    return std::fabs(got - expected) < 1e-5 ? 0 : 1;
}
