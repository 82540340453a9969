namespace Appliance.Wire.Tests;

internal static class Seeds
{
    /// <summary>The seed for a randomized test: APPLIANCE_SEED if set, else a fixed default; printed so a failure replays.</summary>
    public static int Get(int fallback = 12345)
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("APPLIANCE_SEED"), out var s) ? s : fallback;
        Console.WriteLine($"APPLIANCE_SEED={seed}");
        return seed;
    }

    public static bool Soak => Environment.GetEnvironmentVariable("APPLIANCE_SOAK") == "1";
}
