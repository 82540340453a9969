using System.Globalization;

namespace Appliance.Tests.Common;

/// <summary>
/// The one seed helper of randomized tests (compiled into every test project from tests/Common): APPLIANCE_SEED if
/// set, else the test's fallback (a fixed seed) or a fresh random one; printed to the test's output and the console
/// so a failure replays with `APPLIANCE_SEED=N`. APPLIANCE_SOAK=1 turns the long versions on.
/// </summary>
public static class TestSeed
{
    /// <summary>APPLIANCE_SEED, when it is set to a number.</summary>
    public static int? FromEnvironment =>
        int.TryParse(Environment.GetEnvironmentVariable("APPLIANCE_SEED"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) ? s : null;

    /// <summary>The seed for <paramref name="test"/>: APPLIANCE_SEED, else <paramref name="fallback"/>, else a fresh
    /// one; printed.</summary>
    public static int Get(string test, Xunit.Abstractions.ITestOutputHelper? output = null, int? fallback = null)
    {
        var seed = FromEnvironment ?? fallback ?? Random.Shared.Next();
        output?.WriteLine($"{test}: APPLIANCE_SEED={seed}");
        Console.WriteLine($"{test}: APPLIANCE_SEED={seed}");
        return seed;
    }

    public static bool Soak => Environment.GetEnvironmentVariable("APPLIANCE_SOAK") == "1";
}
