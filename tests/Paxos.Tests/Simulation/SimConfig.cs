using Appliance.Paxos.Core;

namespace Appliance.Paxos.Tests.Simulation;

/// <summary>How the simulated hosts drive their nodes.</summary>
public enum BatchMode
{
    /// <summary>Every node chooses at each boot: one call per event, or batch scopes.</summary>
    Mixed,

    /// <summary>One call per event; each call persists on its own.</summary>
    Never,

    /// <summary>Every node groups the events that reach it while its host is busy into one batch scope.</summary>
    Always,
}

/// <summary>One family of schedules. Times are simulated microseconds of real time.</summary>
public sealed record SimConfig
{
    /// <summary>Members of the bootstrap configuration (ids 1..Members).</summary>
    public int Members { get; init; } = 3;

    /// <summary>Extra nodes (ids after the members) that start outside the configuration and can be added.</summary>
    public int Joiners { get; init; }

    /// <summary>Whether the chaos also proposes membership changes (one add or remove at a time).</summary>
    public bool MembershipChanges { get; init; }

    public int Clients { get; init; } = 3;

    public int Keys { get; init; } = 3;

    /// <summary>Faults happen during [0, FaultPhase); then everything heals.</summary>
    public long FaultPhase { get; init; } = 1_500_000;

    /// <summary>After healing, the cluster must serve every write invoked later than this within the rest of the run.</summary>
    public long ProgressGrace { get; init; } = 1_500_000;

    /// <summary>How long clients keep invoking after the grace.</summary>
    public long ProgressWindow { get; init; } = 500_000;

    /// <summary>Quiet time at the end: in-flight writes must finish and members converge.</summary>
    public long Tail { get; init; } = 500_000;

    public bool Crashes { get; init; } = true;

    public bool Partitions { get; init; } = true;

    public double MaxLoss { get; init; } = 0.2;

    public double MaxDuplication { get; init; } = 0.1;

    public long MaxDelay { get; init; } = 20_000;

    /// <summary>Storage that acknowledges writes it has not made durable (a planted bug).</summary>
    public bool LyingStorage { get; init; }

    /// <summary>Whether to check, at every event, that no majority promised above a lease holder's ballot. Off, only
    /// the consequence (two lease holders at one instant, stale reads) remains to be caught.</summary>
    public bool CheckPromisesUnderLease { get; init; } = true;

    public BatchMode Batching { get; init; } = BatchMode.Mixed;

    /// <summary>Whether to check, whenever a node's output is taken, that everything released is backed by its disk
    /// (see Simulation.CheckReleasedDurable). Off, only the end-to-end checkers remain.</summary>
    public bool CheckReleasedDurable { get; init; } = true;

    /// <summary>The chance (during the fault phase, with crashes on) that a batch scope ends in a crash after a random
    /// number of its calls, before EndBatch.</summary>
    public double ScopeCrashChance { get; init; } = 0.003;

    /// <summary>Whether hosts (half of the incarnations, at random) send a leader's Accepts before its own write.</summary>
    public bool EarlyAccepts { get; init; } = true;

    public PaxosOptions Options { get; init; } = FastOptions;

    /// <summary>Short timeouts so a schedule covers several elections in a few simulated seconds.</summary>
    public static PaxosOptions FastOptions { get; } = new()
    {
        HeartbeatInterval = TimeSpan.FromMilliseconds(30),
        LeaseDuration = TimeSpan.FromMilliseconds(200),
        MaxClockDrift = 0.05,
        LeaseMargin = TimeSpan.FromMilliseconds(5),
        ElectionTimeout = TimeSpan.FromMilliseconds(300),
        RetransmitInterval = TimeSpan.FromMilliseconds(40),
        ProposalTimeout = TimeSpan.FromMilliseconds(1500),
        MaxBatchCommands = 8,
        MaxInflightEntries = 4,
        MaxEntriesPerMessage = 16,
        SnapshotInterval = 20,
        KeepEntries = 10,
        MaxSnapshotChunkBytes = 32, // snapshots of a few hundred bytes travel in several pieces
    };

    public long End => FaultPhase + ProgressGrace + ProgressWindow + Tail;
}
