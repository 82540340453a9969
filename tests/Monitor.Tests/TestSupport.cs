using Xunit.Abstractions;

namespace Appliance.Monitor.Tests;

/// <summary>Seeds and switches shared by the monitor tests.</summary>
public static class TestSupport
{
    /// <summary>The seed of randomized tests: APPLIANCE_SEED if set, else a fresh one. Printed so a failure replays.</summary>
    public static int Seed(ITestOutputHelper output, string test)
    {
        var env = Environment.GetEnvironmentVariable("APPLIANCE_SEED");
        var seed = env is not null ? int.Parse(env, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        output.WriteLine($"{test}: APPLIANCE_SEED={seed}");
        Console.WriteLine($"{test}: APPLIANCE_SEED={seed}");
        return seed;
    }

    /// <summary>APPLIANCE_SOAK=1 turns the long versions of the crash tests on.</summary>
    public static bool Soak => Environment.GetEnvironmentVariable("APPLIANCE_SOAK") == "1";
}
