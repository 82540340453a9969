using Appliance.Paxos.Core;

namespace Appliance.Paxos.Encoding;

/// <summary>
/// The byte encoding of Paxos messages and log values. Every message starts with a version byte (1) and a type byte;
/// integers are little-endian; byte strings and lists are length-prefixed. Decoding is a pure function over a span
/// that returns how many bytes it consumed and rejects unknown versions and types.
/// </summary>
public static class PaxosCodec
{
    public const byte Version = 1;

    private enum MessageType : byte
    {
        Prepare = 1,
        Promise = 2,
        Nack = 3,
        Accept = 4,
        Accepted = 5,
        Heartbeat = 6,
        HeartbeatAck = 7,
        CatchUpRequest = 8,
        CatchUp = 9,
        Forward = 10,
        ForwardConfig = 11,
        Handoff = 12,
        SnapshotChunk = 13,
        SnapshotChunkRequest = 14,
    }

    // A configuration value with its proposer's identity (kind 2 is one without, as written before identities).
    private const byte ConfigWithProposerTag = 3;

    public static byte[] Encode(PaxosMessage message)
    {
        var w = new PaxosWriter();
        w.U8(Version);
        switch (message)
        {
            case Prepare m:
                w.U8((byte)MessageType.Prepare);
                WriteBallot(w, m.Ballot);
                w.I64(m.FromIndex);
                break;
            case Promise m:
                w.U8((byte)MessageType.Promise);
                WriteBallot(w, m.Ballot);
                w.I64(m.CommitIndex);
                w.I64(m.FirstIndex);
                WriteEntries(w, m.Entries);
                break;
            case Nack m:
                w.U8((byte)MessageType.Nack);
                WriteBallot(w, m.Refused);
                WriteBallot(w, m.Promised);
                break;
            case Accept m:
                w.U8((byte)MessageType.Accept);
                WriteBallot(w, m.Ballot);
                w.I64(m.CommitIndex);
                WriteEntries(w, m.Entries);
                break;
            case Accepted m:
                w.U8((byte)MessageType.Accepted);
                WriteBallot(w, m.Ballot);
                w.I32(m.Indices.Count);
                foreach (var i in m.Indices)
                {
                    w.I64(i);
                }
                w.I64(m.CommitIndex);
                break;
            case Heartbeat m:
                w.U8((byte)MessageType.Heartbeat);
                WriteBallot(w, m.Ballot);
                w.I64(m.Seq);
                w.I64(m.CommitIndex);
                break;
            case HeartbeatAck m:
                w.U8((byte)MessageType.HeartbeatAck);
                WriteBallot(w, m.Ballot);
                w.I64(m.Seq);
                w.I64(m.CommitIndex);
                break;
            case CatchUpRequest m:
                w.U8((byte)MessageType.CatchUpRequest);
                w.I64(m.FromIndex);
                break;
            case CatchUp m:
                w.U8((byte)MessageType.CatchUp);
                w.I64(m.CommitIndex);
                w.U8(m.Snapshot is null ? (byte)0 : (byte)1);
                if (m.Snapshot is { } s)
                {
                    WriteSnapshot(w, s);
                }
                WriteEntries(w, m.Entries);
                break;
            case Forward m:
                w.U8((byte)MessageType.Forward);
                WriteCommand(w, m.Command);
                break;
            case ForwardConfig m:
                w.U8((byte)MessageType.ForwardConfig);
                WriteMembers(w, m.Members);
                w.I64(m.ClientId);
                w.I64(m.Seq);
                break;
            case SnapshotChunk m:
                w.U8((byte)MessageType.SnapshotChunk);
                w.I64(m.Index);
                w.I64(m.TransferId);
                WriteMembers(w, m.Members);
                w.I64(m.Total);
                w.I64(m.Offset);
                w.Bytes(m.Data);
                break;
            case SnapshotChunkRequest m:
                w.U8((byte)MessageType.SnapshotChunkRequest);
                w.I64(m.Index);
                w.I64(m.TransferId);
                w.I64(m.Offset);
                break;
            case Handoff m:
                w.U8((byte)MessageType.Handoff);
                WriteBallot(w, m.Ballot);
                w.I64(m.CommitIndex);
                w.I32(m.Successor);
                break;
            default:
                throw new ArgumentException($"unknown message {message.GetType().Name}", nameof(message));
        }
        return w.ToArray();
    }

    /// <summary>Decodes one message from the start of <paramref name="input"/>.</summary>
    /// <exception cref="PaxosFormatException">The bytes are truncated, of another version, or malformed.</exception>
    public static PaxosMessage Decode(ReadOnlySpan<byte> input, out int consumed)
    {
        var r = new PaxosReader(input);
        var version = r.U8();
        if (version != Version)
        {
            throw new PaxosFormatException($"unsupported Paxos message version {version} (this node speaks {Version})");
        }
        var type = (MessageType)r.U8();
        PaxosMessage m = type switch
        {
            MessageType.Prepare => new Prepare(ReadBallot(ref r), r.I64()),
            MessageType.Promise => new Promise(ReadBallot(ref r), r.I64(), r.I64(), ReadEntries(ref r)),
            MessageType.Nack => new Nack(ReadBallot(ref r), ReadBallot(ref r)),
            MessageType.Accept => new Accept(ReadBallot(ref r), r.I64(), ReadEntries(ref r)),
            MessageType.Accepted => ReadAccepted(ref r),
            MessageType.Heartbeat => new Heartbeat(ReadBallot(ref r), r.I64(), r.I64()),
            MessageType.HeartbeatAck => new HeartbeatAck(ReadBallot(ref r), r.I64(), r.I64()),
            MessageType.CatchUpRequest => new CatchUpRequest(r.I64()),
            MessageType.CatchUp => ReadCatchUp(ref r),
            MessageType.Forward => new Forward(ReadCommand(ref r)),
            MessageType.ForwardConfig => new ForwardConfig(ReadMembers(ref r), r.I64(), r.I64()),
            MessageType.Handoff => new Handoff(ReadBallot(ref r), r.I64(), r.I32()),
            MessageType.SnapshotChunk => new SnapshotChunk(r.I64(), r.I64(), ReadMembers(ref r), r.I64(), r.I64(), r.Bytes()),
            MessageType.SnapshotChunkRequest => new SnapshotChunkRequest(r.I64(), r.I64(), r.I64()),
            _ => throw new PaxosFormatException($"unknown Paxos message type {(byte)type}"),
        };
        consumed = r.Consumed;
        return m;
    }

    /// <summary>Encodes a log value on its own (a version byte, then the value), e.g. for a store.</summary>
    public static byte[] EncodeValue(LogValue value)
    {
        var w = new PaxosWriter();
        w.U8(Version);
        WriteValue(w, value);
        return w.ToArray();
    }

    public static LogValue DecodeValue(ReadOnlySpan<byte> input)
    {
        var r = new PaxosReader(input);
        var version = r.U8();
        if (version != Version)
        {
            throw new PaxosFormatException($"unsupported log value version {version}");
        }
        var v = ReadValue(ref r);
        if (r.Remaining != 0)
        {
            throw new PaxosFormatException($"{r.Remaining} trailing bytes after a log value");
        }
        return v;
    }

    private static Accepted ReadAccepted(ref PaxosReader r)
    {
        var ballot = ReadBallot(ref r);
        var n = r.Count(8);
        var indices = new long[n];
        for (var i = 0; i < n; i++)
        {
            indices[i] = r.I64();
        }
        return new Accepted(ballot, indices, r.I64());
    }

    private static CatchUp ReadCatchUp(ref PaxosReader r)
    {
        var commit = r.I64();
        var hasSnapshot = r.U8();
        SnapshotData? snapshot = hasSnapshot switch
        {
            0 => null,
            1 => ReadSnapshot(ref r),
            _ => throw new PaxosFormatException($"bad snapshot flag {hasSnapshot}"),
        };
        return new CatchUp(commit, snapshot, ReadEntries(ref r));
    }

    private static void WriteBallot(PaxosWriter w, Ballot b)
    {
        w.I64(b.Round);
        w.I32(b.Node);
    }

    private static Ballot ReadBallot(ref PaxosReader r) => new(r.I64(), r.I32());

    private static void WriteMembers(PaxosWriter w, MemberSet m)
    {
        w.I32(m.Count);
        foreach (var id in m.Ids)
        {
            w.I32(id);
        }
    }

    private static MemberSet ReadMembers(ref PaxosReader r)
    {
        var n = r.Count(4);
        var ids = new int[n];
        for (var i = 0; i < n; i++)
        {
            ids[i] = r.I32();
        }
        return new MemberSet(ids);
    }

    private static void WriteCommand(PaxosWriter w, ClientCommand c)
    {
        w.I64(c.ClientId);
        w.I64(c.Seq);
        w.Bytes(c.Payload);
    }

    private static ClientCommand ReadCommand(ref PaxosReader r) => new(r.I64(), r.I64(), r.Bytes());

    private static void WriteValue(PaxosWriter w, LogValue v)
    {
        if (v.Kind == EntryKind.Config && v.ConfigClientId != 0)
        {
            w.U8(ConfigWithProposerTag);
            WriteMembers(w, v.Members!);
            w.I64(v.ConfigClientId);
            w.I64(v.ConfigSeq);
            return;
        }
        w.U8((byte)v.Kind);
        switch (v.Kind)
        {
            case EntryKind.Noop:
                break;
            case EntryKind.Commands:
                w.I32(v.Commands.Count);
                foreach (var c in v.Commands)
                {
                    WriteCommand(w, c);
                }
                break;
            case EntryKind.Config:
                WriteMembers(w, v.Members!);
                break;
        }
    }

    private static LogValue ReadValue(ref PaxosReader r)
    {
        var kind = (EntryKind)r.U8();
        switch (kind)
        {
            case EntryKind.Noop:
                return LogValue.Noop;
            case EntryKind.Commands:
                var n = r.Count(20);
                var cmds = new ClientCommand[n];
                for (var i = 0; i < n; i++)
                {
                    cmds[i] = ReadCommand(ref r);
                }
                return LogValue.OfCommands(cmds);
            case EntryKind.Config:
                return LogValue.OfConfig(ReadMembers(ref r));
            case (EntryKind)ConfigWithProposerTag:
                return LogValue.OfConfig(ReadMembers(ref r), r.I64(), r.I64());
            default:
                throw new PaxosFormatException($"unknown log entry kind {(byte)kind}");
        }
    }

    private static void WriteEntries(PaxosWriter w, IReadOnlyList<AcceptedEntry> entries)
    {
        w.I32(entries.Count);
        foreach (var e in entries)
        {
            w.I64(e.Index);
            WriteBallot(w, e.Ballot);
            WriteValue(w, e.Value);
        }
    }

    private static AcceptedEntry[] ReadEntries(ref PaxosReader r)
    {
        var n = r.Count(21);
        var entries = new AcceptedEntry[n];
        for (var i = 0; i < n; i++)
        {
            entries[i] = new AcceptedEntry(r.I64(), ReadBallot(ref r), ReadValue(ref r));
        }
        return entries;
    }

    private static void WriteSnapshot(PaxosWriter w, SnapshotData s)
    {
        w.I64(s.Index);
        WriteMembers(w, s.Members);
        w.Bytes(s.Data);
    }

    private static SnapshotData ReadSnapshot(ref PaxosReader r) => new(r.I64(), ReadMembers(ref r), r.Bytes());
}
