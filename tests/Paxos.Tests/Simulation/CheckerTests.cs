using Appliance.Paxos.Core;
using Xunit.Abstractions;

namespace Appliance.Paxos.Tests.Simulation;

/// <summary>The checkers must be able to fail: planted bugs are caught, known-bad histories are rejected.</summary>
public sealed class CheckerTests(ITestOutputHelper output)
{
    /// <summary>Runs fixed seeds until one schedule reports a violation that matches; returns it.</summary>
    private string FirstViolation(SimConfig config, string expect, int maxSchedules = 3000)
    {
        for (var seed = 0; seed < maxSchedules; seed++)
        {
            var r = Simulation.Run(seed, config);
            if (r.Violations.Count > 0)
            {
                output.WriteLine($"caught after {seed + 1} schedules: {r.Violations[0]}");
                Assert.Contains(expect, r.Violations[0], StringComparison.Ordinal);
                return r.Violations[0];
            }
        }
        Assert.Fail($"no schedule among {maxSchedules} caught the planted bug");
        return "";
    }

    [Fact]
    public void A_leader_that_ignores_accepted_values_in_phase_one_is_caught_by_the_agreement_check()
    {
        // The bug bites when a value was chosen but the members that know it is committed are gone: lossy networks
        // and five members make that frequent.
        FirstViolation(new SimConfig
        {
            Members = 5,
            MaxLoss = 0.4,
            Options = SimConfig.FastOptions with { BugIgnoreAcceptedInPhase1 = true },
        }, "was committed before");
    }

    [Fact]
    public void Acceptors_that_promise_while_bound_by_a_lease_are_caught_by_the_lease_check()
    {
        FirstViolation(new SimConfig { Options = SimConfig.FastOptions with { BugNoLeaseGuard = true } }, "promised higher ballots");
    }

    [Fact]
    public void A_leader_lease_that_outlives_the_promises_behind_it_is_caught_as_two_lease_holders()
    {
        // With the promise check off, only the direct one (two holders at one simulated instant) is left to fail.
        FirstViolation(new SimConfig
        {
            CheckPromisesUnderLease = false,
            Options = SimConfig.FastOptions with { BugLeaderLeaseFactor = 3 },
        }, "both hold a lease");
    }

    [Fact]
    public void Followers_serving_reads_from_their_own_state_are_caught_by_the_linearizability_check()
    {
        FirstViolation(new SimConfig { Options = SimConfig.FastOptions with { BugFollowerReads = true } }, "not linearizable");
    }

    [Fact]
    public void Storage_that_acknowledges_writes_it_did_not_make_durable_is_caught_by_the_agreement_check()
    {
        // Without the direct check, which would catch the first reply at once.
        FirstViolation(new SimConfig { LyingStorage = true, CheckReleasedDurable = false }, "committed");
    }

    [Fact]
    public void Storage_that_acknowledges_writes_it_did_not_make_durable_is_caught_by_the_released_durable_check()
    {
        FirstViolation(new SimConfig { LyingStorage = true }, "disk");
    }

    /// <summary>Batching hosts that crash often inside a scope: the configuration the planted batching bugs run in.</summary>
    private static SimConfig CrashyScopes(int members, PaxosOptions options) => new()
    {
        Members = members,
        Partitions = members > 1,
        Batching = BatchMode.Always,
        ScopeCrashChance = 0.05,
        Options = options,
    };

    [Fact]
    public void Batching_hosts_that_crash_inside_scopes_keep_every_invariant_when_the_node_is_correct()
    {
        // The control for the two tests below: the same schedules with the bug absent pass.
        foreach (var members in new[] { 1, 3 })
        {
            for (var seed = 0; seed < 60; seed++)
            {
                var r = Simulation.Run(seed, CrashyScopes(members, SimConfig.FastOptions));
                Assert.True(r.Violations.Count == 0, string.Join("\n", r.Violations));
                Assert.True(r.ScopeCrashes > 0 || seed % 4 != 0 || members == 1, $"seed {seed}: no crash inside a scope");
            }
        }
    }

    [Fact]
    public void A_node_that_releases_replies_inside_a_scope_before_persisting_it_is_caught()
    {
        // Promises and acceptances leave inside the scope, before EndBatch wrote them.
        FirstViolation(CrashyScopes(3, SimConfig.FastOptions with { BugReleaseBeforePersist = true }), "disk");
    }

    [Fact]
    public void A_removed_leader_that_hands_off_but_keeps_serving_is_caught_by_the_lease_check()
    {
        // The members it released promise its successor while its lease runs.
        FirstViolation(new SimConfig
        {
            Members = 3,
            Joiners = 2,
            MembershipChanges = true,
            Options = SimConfig.FastOptions with { BugHandoffKeepsServing = true },
        }, "promised higher ballots");
    }

    [Fact]
    public void The_same_seed_replays_the_same_schedule()
    {
        var config = new SimConfig { Members = 5, Joiners = 1, MembershipChanges = true };
        for (var seed = 100; seed < 110; seed++)
        {
            var a = Simulation.Run(seed, config);
            var b = Simulation.Run(seed, config);
            Assert.Equal(a.ToString(), b.ToString());
            Assert.Equal(a.Trace, b.Trace);
        }
        Assert.NotEqual(Simulation.Run(1, config).Trace, Simulation.Run(2, config).Trace);
    }

    [Fact]
    public void A_stale_read_after_an_acknowledged_write_is_not_linearizable()
    {
        var history = new List<KvOp>
        {
            new(1, KvOpKind.Put, 0, 5, 0, Invoke: 0, Response: 10, null, null),
            new(2, KvOpKind.Get, 0, 0, 0, Invoke: 20, Response: 20, null, ReadValue: 0),
        };
        Assert.NotNull(Linearizability.Check(history));
        // Concurrent with the write, the old value is fine.
        history[1] = history[1] with { Invoke = 5, Response = 5 };
        Assert.Null(Linearizability.Check(history));
    }

    [Fact]
    public void Reads_that_see_two_writes_in_opposite_orders_are_not_linearizable()
    {
        var history = new List<KvOp>
        {
            new(1, KvOpKind.Put, 0, 1, 0, 0, 100, null, null),
            new(2, KvOpKind.Put, 0, 2, 0, 0, 100, null, null),
            new(3, KvOpKind.Get, 0, 0, 0, 10, 10, null, 1),
            new(3, KvOpKind.Get, 0, 0, 0, 20, 20, null, 2),
            new(4, KvOpKind.Get, 0, 0, 0, 30, 30, null, 1),
        };
        Assert.NotNull(Linearizability.Check(history));
        history.RemoveAt(4);
        Assert.Null(Linearizability.Check(history));
    }

    [Fact]
    public void A_write_with_an_unknown_outcome_may_or_may_not_have_happened()
    {
        var unknown = new KvOp(1, KvOpKind.Put, 0, 7, 0, 0, null, null, null);
        Assert.Null(Linearizability.Check([unknown, new KvOp(2, KvOpKind.Get, 0, 0, 0, 50, 50, null, 7)]));
        Assert.Null(Linearizability.Check([unknown, new KvOp(2, KvOpKind.Get, 0, 0, 0, 50, 50, null, 0)]));
        // But once seen it cannot be unseen.
        Assert.NotNull(Linearizability.Check([unknown, new KvOp(2, KvOpKind.Get, 0, 0, 0, 50, 50, null, 7),
            new KvOp(2, KvOpKind.Get, 0, 0, 0, 60, 60, null, 0)]));
    }

    [Fact]
    public void A_compare_and_set_result_must_match_the_state()
    {
        var history = new List<KvOp>
        {
            new(1, KvOpKind.Put, 0, 1, 0, 0, 10, null, null),
            new(2, KvOpKind.Cas, 0, 2, Expected: 0, 20, 30, CasOk: true, null),
        };
        Assert.NotNull(Linearizability.Check(history));
        history[1] = history[1] with { CasOk = false };
        Assert.Null(Linearizability.Check(history));
    }
}
