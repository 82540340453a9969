namespace Appliance.Paxos.Core;

/// <summary>
/// The replicated state machine on top of the log (the monitor's maps, or a test register). The log applies each
/// committed command exactly once and in index order on every member; a state machine must be deterministic: the same
/// commands from the same state give the same state and the same results on every member.
/// </summary>
public interface IStateMachine
{
    /// <summary>Applies one committed command and returns its result (sent back to the proposer).</summary>
    byte[] Apply(long index, ReadOnlySpan<byte> command);

    /// <summary>Answers a read-only query against the current state.</summary>
    byte[] Query(ReadOnlySpan<byte> query);

    /// <summary>The whole state as bytes (used for catch-up by snapshot and to bound the log).</summary>
    byte[] Snapshot();

    /// <summary>Replaces the whole state with one taken by <see cref="Snapshot"/>.</summary>
    void Restore(ReadOnlySpan<byte> snapshot);
}
