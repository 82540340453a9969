namespace Appliance.Paxos.Core;

/// <summary>What one log entry carries.</summary>
public enum EntryKind : byte
{
    /// <summary>Fills a hole a new leader found in the log; changes nothing.</summary>
    Noop = 0,

    /// <summary>A batch of client commands, applied in order.</summary>
    Commands = 1,

    /// <summary>A new member set; it governs every index after this entry's (see README, "Membership").</summary>
    Config = 2,
}

/// <summary>One client command. (ClientId, Seq) identifies it: a command whose Seq is not above the last one applied
/// for its client is not applied again (retransmitted and duplicated proposals are applied at most once).</summary>
public sealed record ClientCommand(long ClientId, long Seq, byte[] Payload)
{
    public bool Equals(ClientCommand? other) =>
        other is not null && ClientId == other.ClientId && Seq == other.Seq && Payload.AsSpan().SequenceEqual(other.Payload);

    public override int GetHashCode() => HashCode.Combine(ClientId, Seq, Payload.Length);
}

/// <summary>The value of a log entry: a no-op, a batch of commands, or a configuration.</summary>
public sealed class LogValue : IEquatable<LogValue>
{
    private LogValue(EntryKind kind, IReadOnlyList<ClientCommand> commands, MemberSet? members, long configClientId = 0, long configSeq = 0)
    {
        Kind = kind;
        Commands = commands;
        Members = members;
        ConfigClientId = configClientId;
        ConfigSeq = configSeq;
    }

    public static LogValue Noop { get; } = new(EntryKind.Noop, [], null);

    public EntryKind Kind { get; }

    public IReadOnlyList<ClientCommand> Commands { get; }

    /// <summary>The new member set of a <see cref="EntryKind.Config"/> entry; null otherwise.</summary>
    public MemberSet? Members { get; }

    /// <summary>Who proposed a <see cref="EntryKind.Config"/> entry, (client id, sequence) as for commands, so its
    /// proposer can report the outcome and a resent change is applied at most once; 0 when anonymous.</summary>
    public long ConfigClientId { get; }

    public long ConfigSeq { get; }

    public static LogValue OfCommands(IReadOnlyList<ClientCommand> commands) => new(EntryKind.Commands, commands, null);

    public static LogValue OfConfig(MemberSet members) => new(EntryKind.Config, [], members);

    /// <summary>A configuration entry proposed by (<paramref name="clientId"/>, <paramref name="seq"/>).</summary>
    public static LogValue OfConfig(MemberSet members, long clientId, long seq) => new(EntryKind.Config, [], members, clientId, seq);

    public bool Equals(LogValue? other)
    {
        if (other is null || other.Kind != Kind || !Equals(other.Members, Members) || other.Commands.Count != Commands.Count
            || other.ConfigClientId != ConfigClientId || other.ConfigSeq != ConfigSeq)
        {
            return false;
        }
        for (var i = 0; i < Commands.Count; i++)
        {
            if (!Commands[i].Equals(other.Commands[i]))
            {
                return false;
            }
        }
        return true;
    }

    public override bool Equals(object? obj) => Equals(obj as LogValue);

    public override int GetHashCode() => HashCode.Combine(Kind, Commands.Count, Members);

    public override string ToString() => Kind switch
    {
        EntryKind.Noop => "noop",
        EntryKind.Config => "config" + Members + (ConfigClientId != 0 ? $"@{ConfigClientId}:{ConfigSeq}" : ""),
        _ => $"cmds[{string.Join(",", Commands.Select(c => $"{c.ClientId}:{c.Seq}"))}]",
    };
}

/// <summary>An acceptor's record for one index: the value it accepted and the ballot it accepted it in.</summary>
public sealed record AcceptedEntry(long Index, Ballot Ballot, LogValue Value);
