using Xunit.Abstractions;

namespace Appliance.Monitor.Tests;

/// <summary>Seeds and switches shared by the monitor tests.</summary>
public static class TestSupport
{
    /// <summary>The seed of randomized tests: APPLIANCE_SEED if set, else a fresh one. Printed so a failure replays.</summary>
    public static int Seed(ITestOutputHelper output, string test) => TestSeed.Get(test, output);

    /// <summary>APPLIANCE_SOAK=1 turns the long versions of the crash tests on.</summary>
    public static bool Soak => TestSeed.Soak;
}
