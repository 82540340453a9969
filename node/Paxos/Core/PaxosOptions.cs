namespace Appliance.Paxos.Core;

/// <summary>Timing and sizing of a Paxos member. All durations are measured on the member's own monotonic clock.</summary>
public sealed record PaxosOptions
{
    /// <summary>How often the leader renews its lease and announces its commit index.</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>How long an acceptor that acknowledged a heartbeat refuses to promise any other ballot, measured on
    /// its clock from when it received the heartbeat.</summary>
    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The bound on clock-rate error: every member's clock runs at between (1 - d) and (1 + d) times real
    /// time. The leader's lease is shortened so it ends before any acceptor's promise to it can end.</summary>
    public double MaxClockDrift { get; init; } = 0.05;

    /// <summary>Subtracted from the leader's lease on top of the drift correction (scheduling slack).</summary>
    public TimeSpan LeaseMargin { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>A follower that has not heard from a leader for this long (plus a random share of it) starts an
    /// election. Must exceed <see cref="LeaseDuration"/>.</summary>
    public TimeSpan ElectionTimeout { get; init; } = TimeSpan.FromMilliseconds(1000);

    /// <summary>How often unanswered prepares, accepts, forwards and catch-up requests are sent again.</summary>
    public TimeSpan RetransmitInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>A proposal not committed within this time completes as <see cref="ProposalStatus.Timeout"/> (its
    /// outcome is then unknown: it may still commit later).</summary>
    public TimeSpan ProposalTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>At most this many client commands go into one log entry.</summary>
    public int MaxBatchCommands { get; init; } = 64;

    /// <summary>At most this many entries are proposed and not yet committed at once; further proposals queue and
    /// are batched.</summary>
    public int MaxInflightEntries { get; init; } = 8;

    /// <summary>At most this many entries in one accept or catch-up message.</summary>
    public int MaxEntriesPerMessage { get; init; } = 64;

    /// <summary>A snapshot sent to a lagging member travels in pieces of at most this many bytes, one piece per
    /// request (so a transfer resumes where it stopped after a loss, and no message is larger than this plus a few
    /// bytes).</summary>
    public int MaxSnapshotChunkBytes { get; init; } = 256 * 1024;

    /// <summary>The largest snapshot a member accepts from another (a bound on what a transfer may allocate).</summary>
    public long MaxSnapshotBytes { get; init; } = 1L << 30;

    /// <summary>A snapshot is taken every this many committed entries at the most often; when the state is larger than
    /// what those entries hold, only once the entries committed since the last snapshot hold as many bytes as it (at most
    /// 16 intervals apart), so writing snapshots never costs more than writing the log.</summary>
    public int SnapshotInterval { get; init; } = 100;

    /// <summary>When a snapshot is taken, this many entries before it are kept for catch-up by log; older ones are
    /// trimmed.</summary>
    public int KeepEntries { get; init; } = 50;

    /// <summary>A client that has had nothing applied for this many log entries is forgotten (its at-most-once
    /// record is dropped), so one-shot clients such as CLI invocations do not accumulate forever.</summary>
    public long SessionRetention { get; init; } = 100_000;

    /// <summary>Test only: the new leader ignores values other members accepted (breaks safety on purpose).</summary>
    internal bool BugIgnoreAcceptedInPhase1 { get; init; }

    /// <summary>Test only: acceptors promise new ballots while a lease they granted may still be held.</summary>
    internal bool BugNoLeaseGuard { get; init; }

    /// <summary>Test only: followers answer reads from their own, possibly stale, state.</summary>
    internal bool BugFollowerReads { get; init; }

    /// <summary>Test only: when positive, the leader's lease is this multiple of <see cref="LeaseDuration"/> instead of
    /// the drift-corrected value (a lease that outlives the promises behind it).</summary>
    internal double BugLeaderLeaseFactor { get; init; }

    /// <summary>Test only: inside a batch scope, every call releases its messages and completions at once while the
    /// write waits for EndBatch (a reply sent before the state it depends on is durable).</summary>
    internal bool BugReleaseBeforePersist { get; init; }

    /// <summary>Inside batch scopes, do not write a batch that only advances the commit index (and snapshots/trims
    /// our own applied state): release the scope's output at once and write the commit index with the next write.
    /// Nothing released depends on it — a committed entry is durable here and on a quorum; a restarted member
    /// re-learns the commit index from the leader — and it saves a sync on the commit path (the leader's commit,
    /// followers' commit notices). Outside scopes every call writes what it changed, as always.</summary>
    public bool DeferCommitWrites { get; init; } = true;

    /// <summary>The longest a deferred commit index waits for a write; a scope ending later than this after the
    /// deferral writes it (the host's tick scopes see to it when idle).</summary>
    public TimeSpan MaxCommitWriteDelay { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>Test only: a leader whose removal committed hands off but keeps leading and serving reads under its
    /// lease (the members it released may elect a successor while that lease runs).</summary>
    internal bool BugHandoffKeepsServing { get; init; }

    /// <summary>How long the leader may serve reads after sending a heartbeat that a quorum acknowledged.
    /// Acceptor promise lasts L real seconds at least L/(1+d); the leader's lease lasts at most
    /// leaderLease/(1-d) real seconds; so leaderLease = L(1-d)/(1+d) - margin ends first.</summary>
    public TimeSpan LeaderLease => BugLeaderLeaseFactor > 0
        ? LeaseDuration * BugLeaderLeaseFactor
        : LeaseDuration * ((1 - MaxClockDrift) / (1 + MaxClockDrift)) - LeaseMargin;

    /// <summary>Throws if the options are inconsistent.</summary>
    public void Validate()
    {
        if (MaxClockDrift is < 0 or >= 0.5)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxClockDrift), "clock drift bound must be in [0, 0.5)");
        }
        if (LeaderLease <= HeartbeatInterval)
        {
            throw new ArgumentException("the leader lease (after drift and margin) must be longer than the heartbeat interval");
        }
        if (ElectionTimeout <= LeaseDuration)
        {
            throw new ArgumentException("the election timeout must be longer than the lease duration");
        }
        if (SessionRetention < 1)
        {
            throw new ArgumentException("session retention must be positive");
        }
        if (MaxSnapshotChunkBytes < 1 || MaxSnapshotBytes < 1 || MaxSnapshotBytes > Array.MaxLength)
        {
            throw new ArgumentException($"snapshot chunk and snapshot size bounds must be positive (and a snapshot at most {Array.MaxLength} bytes)");
        }
        if (MaxInflightEntries < 1 || MaxBatchCommands < 1 || MaxEntriesPerMessage < 1 || SnapshotInterval < 1 || KeepEntries < 0)
        {
            throw new ArgumentException("batch, window, snapshot and keep sizes must be positive");
        }
    }
}
