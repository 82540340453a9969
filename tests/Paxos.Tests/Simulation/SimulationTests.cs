using Xunit.Abstractions;

namespace Appliance.Paxos.Tests.Simulation;

// One class per family so xunit runs the families in parallel.

public sealed class ThreeMemberSimulationTests(ITestOutputHelper output)
{
    [Fact]
    public void Three_members_under_loss_delay_duplication_partitions_and_crashes_keep_every_invariant() =>
        SimRunner.RunMany(output, "3 members", new SimConfig { Members = 3 }, SimRunner.Scale(1200));
}

public sealed class FiveMemberSimulationTests(ITestOutputHelper output)
{
    [Fact]
    public void Five_members_under_loss_delay_duplication_partitions_and_crashes_keep_every_invariant() =>
        SimRunner.RunMany(output, "5 members", new SimConfig { Members = 5 }, SimRunner.Scale(600));
}

public sealed class MembershipSimulationTests(ITestOutputHelper output)
{
    [Fact]
    public void Members_added_and_removed_one_at_a_time_under_faults_keep_every_invariant() =>
        SimRunner.RunMany(output, "membership", new SimConfig { Members = 3, Joiners = 2, MembershipChanges = true }, SimRunner.Scale(700));
}

public sealed class BatchingSimulationTests(ITestOutputHelper output)
{
    [Fact]
    public void Many_clients_behind_a_narrow_window_batch_and_keep_every_invariant() =>
        SimRunner.RunMany(output, "batching", new SimConfig
        {
            Members = 3,
            Clients = 8,
            Keys = 6,
            Options = SimConfig.FastOptions with { MaxInflightEntries = 1, MaxBatchCommands = 4 },
        }, SimRunner.Scale(250));
}

public sealed class SingleMemberSimulationTests(ITestOutputHelper output)
{
    [Fact]
    public void One_member_with_crashes_keeps_every_invariant() =>
        SimRunner.RunMany(output, "1 member", new SimConfig { Members = 1, Partitions = false }, SimRunner.Scale(150));
}
