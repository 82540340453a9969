using Xunit.Abstractions;

namespace Appliance.Paxos.Tests.Simulation;

/// <summary>Runs many schedules. The base seed comes from APPLIANCE_SEED (else a fresh one, printed); schedule i
/// uses base + i, so a failure names its own seed and `APPLIANCE_SEED=that` replays it first. APPLIANCE_SOAK=1
/// multiplies the number of schedules by 25.</summary>
public static class SimRunner
{
    public static bool Soak => Environment.GetEnvironmentVariable("APPLIANCE_SOAK") == "1";

    public static int BaseSeed()
    {
        var env = Environment.GetEnvironmentVariable("APPLIANCE_SEED");
        return env is not null ? int.Parse(env, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
    }

    public static int Scale(int schedules) => Soak ? schedules * 25 : schedules;

    public static void RunMany(ITestOutputHelper output, string name, SimConfig config, int schedules)
    {
        var baseSeed = BaseSeed();
        output.WriteLine($"{name}: {schedules} schedules from seed {baseSeed} (replay one with APPLIANCE_SEED=<seed>)");
        long events = 0, writes = 0, reads = 0, unknown = 0, crashes = 0, leaders = 0, membership = 0, committed = 0;
        for (var i = 0; i < schedules; i++)
        {
            var seed = unchecked(baseSeed + i);
            var r = Simulation.Run(seed, config);
            if (r.Violations.Count > 0)
            {
                var message = $"{name}: schedule with seed {seed} broke an invariant (replay: APPLIANCE_SEED={seed}):\n" +
                              string.Join("\n", r.Violations) + "\n" + r;
                output.WriteLine(message);
                Assert.Fail(message);
            }
            events += r.Events;
            writes += r.WritesOk;
            reads += r.ReadsOk;
            unknown += r.Unknown;
            crashes += r.Crashes;
            leaders += r.LeaderChanges;
            membership += r.MembershipChanges;
            committed += r.Committed;
        }
        output.WriteLine($"{name}: all {schedules} schedules passed: {events} events, {committed} entries committed, {writes} writes ok, " +
                         $"{reads} lease reads ok, {unknown} unknown outcomes, {crashes} crashes, {leaders} leader changes, " +
                         $"{membership} membership changes");
    }
}
