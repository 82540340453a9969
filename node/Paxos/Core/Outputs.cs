namespace Appliance.Paxos.Core;

/// <summary>A message the node wants delivered to member <paramref name="To"/>.</summary>
public readonly record struct OutgoingMessage(int To, PaxosMessage Message);

public enum ProposalStatus
{
    /// <summary>Committed and applied; the result is the state machine's.</summary>
    Committed,

    /// <summary>The command had already been applied under a newer sequence number of its client; no result.</summary>
    Superseded,

    /// <summary>Not committed within the proposal timeout; it may still commit later.</summary>
    Timeout,
}

/// <summary>The end of a proposal made on this node.</summary>
public sealed record ProposalOutcome(long ClientId, long Seq, ProposalStatus Status, byte[]? Result);

/// <summary>What a node produced since the last <see cref="PaxosNode.TakeOutput"/>. Everything in it depends only
/// on state that is already durable.</summary>
public sealed class PaxosOutput
{
    public List<OutgoingMessage> Messages { get; } = [];

    public List<ProposalOutcome> Completions { get; } = [];

    public bool IsEmpty => Messages.Count == 0 && Completions.Count == 0;
}

public enum ProposeStatus
{
    /// <summary>Accepted for proposal (here or at the leader); a <see cref="ProposalOutcome"/> follows.</summary>
    Pending,

    /// <summary>This member knows no leader it could reach: try another member or later.</summary>
    NoQuorum,

    /// <summary>Refused: a membership change that is not a single add or remove, or one is already in progress.</summary>
    Rejected,
}

public enum ReadStatus
{
    /// <summary>Served by the leader under its lease: linearizable.</summary>
    Ok,

    /// <summary>This member is not the leader; <see cref="ReadResult.LeaderHint"/> names the one it follows.</summary>
    NotLeader,

    /// <summary>This member cannot serve a current value (no lease, no known leader): nothing stale is returned.</summary>
    NoQuorum,
}

public readonly record struct ReadResult(ReadStatus Status, byte[]? Value, int? LeaderHint);

public enum PaxosRole
{
    Follower,
    Candidate,
    Leader,
}
