// What a write costs when another core has read the line: the cost that bounds a team of
// threads which all read every weight in the forward pass and then each update a part of them
// (README, "On more cores"). Two threads; each round, both read a 172 KB buffer (deep-narrow's
// parameters split in two), then one of them adds 1 to every entry, timed; then the same add
// on a buffer no other core touches. Not part of the build:
//   g++ -O3 -march=native -pthread bench/coherence.cpp -o /tmp/coherence && /tmp/coherence
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

float read_all(const std::vector<float>& buf) {  // one load a cache line
  float s = 0;
  for (std::size_t i = 0; i < buf.size(); i += 16) s += buf[i];
  return s;
}

double add_one(std::vector<float>& buf) {  // microseconds
  const Clock::time_point t0 = Clock::now();
  for (float& x : buf) x += 1.0f;
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

}  // namespace

int main() {
  constexpr int kRounds = 2000;
  std::vector<float> buf(172 * 1024 / sizeof(float), 1.0f);
  const double lines = double(buf.size()) / 16;
  std::atomic<int> turn{0};
  volatile float sink = 0;

  std::thread other([&] {
    for (int r = 0; r < kRounds; ++r) {
      while (turn.load() != 2 * r + 1) {
      }
      sink = read_all(buf);
      turn.store(2 * r + 2);
    }
  });
  double shared = 0;
  for (int r = 0; r < kRounds; ++r) {
    sink = read_all(buf);
    turn.store(2 * r + 1);
    while (turn.load() != 2 * r + 2) {
    }
    shared += add_one(buf);
  }
  other.join();

  double own = 0;
  for (int r = 0; r < kRounds; ++r) {
    sink = read_all(buf);
    own += add_one(buf);
  }
  std::printf("write to 172 KB the other core has read: %.2f us (%.1f ns a line)\n",
              shared / kRounds, shared / kRounds * 1000 / lines);
  std::printf("write to 172 KB no other core holds:     %.2f us (%.1f ns a line)\n", own / kRounds,
              own / kRounds * 1000 / lines);
  return 0;
}
