// plot_latency against the real gnuplot: a PNG when it can draw one, and an
// error carrying gnuplot's own words when it cannot.
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "bench/report.h"
#include "testing/run_tool.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"

using namespace rundkit;

namespace {


class PlotLatency : public ::testing::Test {
protected:
  void SetUp() override {
    if (!have_program("gnuplot"))
      GTEST_SKIP() << "gnuplot is not installed";
    char tmpl[] = "/tmp/rundkit-plot-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    csv_ = dir_ + "/r.csv";
    write_csv(csv_, {{"reflink", 1, 10, 0.5, 0.9, 1.0, 100},
                     {"reflink", 10, 10, 0.7, 1.2, 1.5, 900},
                     {"copy", 1, 10, 50, 90, 95, 10}});
  }
  void TearDown() override {
    if (!dir_.empty())
      std::filesystem::remove_all(dir_);
  }
  std::string dir_, csv_;
};

} // namespace

TEST_F(PlotLatency, DrawsAPng) {
  plot_latency(csv_, dir_ + "/r.png", "test");
  EXPECT_EQ(read_file(dir_ + "/r.png").substr(0, 4), "\x89PNG");
}

// Found failing on e474ca6: the error said only "exit 1; is gnuplot
// installed?", what gnuplot printed went to our stderr.
TEST_F(PlotLatency, FailureCarriesWhatGnuplotSaid) {
  try {
    plot_latency(csv_, "/nonexistent-rundkit-dir/r.png", "test");
    FAIL() << "a plot into a missing directory succeeded";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("cannot open file"), std::string::npos) << e.what();
    auto *pe = dynamic_cast<const ProcessError *>(&e);
    ASSERT_NE(pe, nullptr) << e.what();
    EXPECT_EQ(pe->status(), ExitStatus::exited(1));
  }
}

// Found failing on e474ca6: with SIGCHLD ignored the child is reaped by the
// kernel, the unchecked waitpid failed and its untouched status (0) passed
// for success: a plot that was never drawn was reported as drawn.
TEST_F(PlotLatency, AFailedPlotIsNeverReportedAsDrawn) {
  struct sigaction ign = {}, old = {};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGCHLD, &ign, &old);
  bool threw = false;
  try {
    plot_latency(csv_, "/nonexistent-rundkit-dir/r.png", "test");
  } catch (const Error &) {
    threw = true;
  }
  ::sigaction(SIGCHLD, &old, nullptr);
  EXPECT_TRUE(threw) << "a plot into a missing directory was reported as drawn";
}
