namespace Appliance.Wire.Tests;

internal static class Seeds
{
    /// <summary>The seed for a randomized test: APPLIANCE_SEED if set, else a fixed default; printed so a failure replays.</summary>
    public static int Get(int fallback = 12345) => TestSeed.Get("Wire.Tests", fallback: fallback);

    public static bool Soak => TestSeed.Soak;
}
