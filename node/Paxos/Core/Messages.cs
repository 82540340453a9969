namespace Appliance.Paxos.Core;

/// <summary>A message between members. The transport tells the receiver who sent it (an authenticated peer id);
/// messages do not carry their sender.</summary>
public abstract record PaxosMessage;

/// <summary>Phase 1a: a candidate asks for promises for <paramref name="Ballot"/> and for every accepted entry at or
/// above <paramref name="FromIndex"/> (its commit index + 1).</summary>
public sealed record Prepare(Ballot Ballot, long FromIndex) : PaxosMessage;

/// <summary>Phase 1b: the acceptor promised <paramref name="Ballot"/>; it reports its commit index, the first index it
/// still holds, and every entry it accepted at or above the requested index.</summary>
public sealed record Promise(Ballot Ballot, long CommitIndex, long FirstIndex, IReadOnlyList<AcceptedEntry> Entries) : PaxosMessage;

/// <summary>The receiver has promised a higher ballot than the one in the refused message.</summary>
public sealed record Nack(Ballot Refused, Ballot Promised) : PaxosMessage;

/// <summary>Phase 2a: the leader asks to accept entries in its ballot, and says how far the log is committed. With no
/// entries it is only a commit notice.</summary>
public sealed record Accept(Ballot Ballot, long CommitIndex, IReadOnlyList<AcceptedEntry> Entries) : PaxosMessage;

/// <summary>Phase 2b: the acceptor durably accepted these indices in <paramref name="Ballot"/>.</summary>
public sealed record Accepted(Ballot Ballot, IReadOnlyList<long> Indices, long CommitIndex) : PaxosMessage;

/// <summary>The leader's periodic lease request and commit notice.</summary>
public sealed record Heartbeat(Ballot Ballot, long Seq, long CommitIndex) : PaxosMessage;

/// <summary>The acceptor grants the lease for heartbeat <paramref name="Seq"/>: it will promise no other ballot for
/// the lease duration measured on its own clock from when it received the heartbeat.</summary>
public sealed record HeartbeatAck(Ballot Ballot, long Seq, long CommitIndex) : PaxosMessage;

/// <summary>A lagging member asks for committed entries from <paramref name="FromIndex"/> on.</summary>
public sealed record CatchUpRequest(long FromIndex) : PaxosMessage;

/// <summary>A snapshot of the applied state at <paramref name="Index"/>, with the member set that governs the next
/// index. <paramref name="Data"/> is the node's snapshot (client sessions + state machine).</summary>
public sealed record SnapshotData(long Index, MemberSet Members, byte[] Data);

/// <summary>Committed history for a lagging member: optionally a snapshot, then committed entries in order.</summary>
public sealed record CatchUp(long CommitIndex, SnapshotData? Snapshot, IReadOnlyList<AcceptedEntry> Entries) : PaxosMessage;

/// <summary>A member that is not the leader passes a client command on to the leader.</summary>
public sealed record Forward(ClientCommand Command) : PaxosMessage;

/// <summary>A member forwarded a membership change to the leader, with its proposer's (client id, sequence), 0 when
/// anonymous.</summary>
public sealed record ForwardConfig(MemberSet Members, long ClientId = 0, long Seq = 0) : PaxosMessage;

/// <summary>The leader of <paramref name="Ballot"/> stopped leading (its removal committed through
/// <paramref name="CommitIndex"/>) and serves nothing any more: the lease granted to it binds no one now, and
/// <paramref name="Successor"/> should run for leader at once.</summary>
public sealed record Handoff(Ballot Ballot, long CommitIndex, int Successor) : PaxosMessage;

/// <summary>One piece of a snapshot being transferred to a lagging member: bytes
/// [<paramref name="Offset"/>, Offset + Data.Length) of the snapshot's data, of <paramref name="Total"/> bytes, taken at
/// <paramref name="Index"/> (with the member set governing the next index). <paramref name="TransferId"/> names the
/// copy (a 64-bit hash of its index and bytes): pieces of different copies never mix.
/// The receiver asks for the next piece.</summary>
public sealed record SnapshotChunk(long Index, long TransferId, MemberSet Members, long Total, long Offset, byte[] Data) : PaxosMessage;

/// <summary>The receiver of snapshot copy <paramref name="TransferId"/> at <paramref name="Index"/> asks for its bytes
/// from <paramref name="Offset"/> on (resuming after a lost piece). A sender that no longer serves that copy starts
/// over with its current one.</summary>
public sealed record SnapshotChunkRequest(long Index, long TransferId, long Offset) : PaxosMessage;
