using Appliance.Maps;
using Appliance.Wire.Codec;

namespace Appliance.Osd.Protocol;

/// <summary>Message types of the OSD protocol (clients to OSDs, and OSDs to OSDs). Never renumber.</summary>
public static class OsdMessageType
{
    public const ushort OpRequest = 500;
    public const ushort OpReply = 501;
    public const ushort WatchNotify = 502;
    public const ushort WatchNotifyAck = 503;

    public const ushort RepOp = 520;
    public const ushort RepOpReply = 521;
    public const ushort PgQuery = 530;
    public const ushort PgNotify = 531;
    public const ushort PgActivate = 532;
    public const ushort PgActivateReply = 533;
    public const ushort Push = 534;
    public const ushort PushReply = 535;
    public const ushort PullRequest = 536;
    /// <summary>A stray asks a PG's primary whether the PG is active+clean without it (answered with a PeerResult).</summary>
    public const ushort PgCleanQuery = 537;
    public const ushort PgCleanReply = 538;
}

/// <summary>
/// Who asked for a change, so that a resend is recognised: the client instance (its authenticated entity and a
/// per-process nonce, so two servers both running as client.admin are told apart) and the client's transaction id.
/// </summary>
public readonly record struct ReqId(string Entity, ulong Nonce, ulong Tid)
{
    public override string ToString() => $"{Entity}:{Nonce}:{Tid}";

    public void Encode(WireWriter w)
    {
        w.WriteString(Entity);
        w.WriteU64(Nonce);
        w.WriteU64(Tid);
    }

    public static ReqId Decode(ref WireReader r) => new(r.ReadString(256), r.ReadU64(), r.ReadU64());
}

/// <summary>
/// A client's request: sub-operations on one object (or on the PG, for listing), sent to the PG's primary. The
/// client computes the object's hash and PG with its osdmap of <see cref="MapEpoch"/>; an OSD that is not the
/// primary under its own newer map answers <see cref="OsdResult.TryAgain"/> with its epoch, and the client resends
/// when it has that map. The entity of the <see cref="ReqId"/> is the session's authenticated one (the OSD ignores
/// what the client wrote there).
/// </summary>
public sealed record OsdOpRequest(ulong Tid, ulong ClientNonce, uint MapEpoch, PgId Pg, string Object, uint ObjectHash, IReadOnlyList<OsdOp> Ops)
{
    private const byte Version = 1;

    /// <summary>Set on a resend, so the OSD looks the request up in the PG log first (it does anyway).</summary>
    public bool Resend { get; init; }

    public bool IsWrite => Ops.Any(o => o.IsWrite || o.Code == OsdOpCode.Call);

    /// <summary>
    /// Not encoded: set by a receiver whose decoded request slices a pooled message (<see cref="FromShared"/>). Whoever
    /// still reads the ops' data after the request completed (a store transaction running on) takes a reference
    /// through it first and disposes it when done; the receiver's own reference ends with the request.
    /// </summary>
    public Func<IDisposable>? KeepData { get; init; }

    public byte[] ToBytes() => Encode().ToArray();

    /// <summary>The encoding in an array of its own (written once, not copied afterwards): to send without a copy.</summary>
    public ReadOnlyMemory<byte> Encode()
    {
        using var w = WireWriter.ForHandOver(256 + Ops.Sum(o => o.Data.Length + 64 + o.Name.Length + o.Name2.Length) + Object.Length * 3);
        var m = w.BeginStruct(Version, 1);
        w.WriteU64(Tid);
        w.WriteU64(ClientNonce);
        w.WriteU32(MapEpoch);
        Pg.Encode(w);
        w.WriteString(Object);
        w.WriteU32(ObjectHash);
        w.WriteBool(Resend);
        w.WriteU32((uint)Ops.Count);
        foreach (var op in Ops)
        {
            op.Encode(w);
        }
        w.EndStruct(m);
        return w.Detach();
    }

    /// <summary>Decodes a request; the ops' data are copies.</summary>
    public static OsdOpRequest FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        return Decode(ref r);
    }

    /// <summary>Decodes a request whose ops' data are slices of <paramref name="memory"/> (no copy): valid as long as
    /// it is.</summary>
    public static OsdOpRequest FromShared(ReadOnlyMemory<byte> memory)
    {
        var r = new WireReader(memory);
        return Decode(ref r);
    }

    private static OsdOpRequest Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "osd op request");
        var tid = r.ReadU64();
        var nonce = r.ReadU64();
        var epoch = r.ReadU32();
        var pg = PgId.Decode(ref r);
        var name = r.ReadString(Limits.MaxObjectNameBytes * 2);
        var hash = r.ReadU32();
        var resend = r.ReadBool();
        var count = Limits.ReadCount(ref r, 8, "ops");
        if (count > Limits.MaxOps)
        {
            throw new WireFormatException($"a request holds at most {Limits.MaxOps} operations, not {count}");
        }
        var ops = new OsdOp[count];
        for (var i = 0; i < count; i++)
        {
            ops[i] = OsdOp.Decode(ref r);
        }
        r.EndStruct(s);
        r.ExpectEnd("osd op request");
        return new OsdOpRequest(tid, nonce, epoch, pg, name, hash, ops) { Resend = resend };
    }
}

/// <summary>The outcome of one sub-operation: its result code, and what it read.</summary>
public sealed record OsdOpOutput(int Result)
{
    public ReadOnlyMemory<byte> Data { get; init; }
    public IReadOnlyList<KeyValuePair<string, byte[]>> Pairs { get; init; } = [];
    /// <summary>For listings and omap pages: more entries follow.</summary>
    public bool More { get; init; }

    public static readonly OsdOpOutput Success = new(OsdResult.Ok);

    internal void Encode(WireWriter w)
    {
        w.WriteI32(Result);
        w.WriteBytes(Data.Span);
        PairCodec.WritePairs(w, Pairs);
        w.WriteBool(More);
    }

    internal static OsdOpOutput Decode(ref WireReader r)
    {
        var result = r.ReadI32();
        var data = r.ReadBytesShared(Limits.MaxPayload + (1 << 20));
        var pairs = PairCodec.ReadPairs(ref r, Limits.MaxObjectNameBytes * 2, Limits.MaxPayload, "pairs");
        return new OsdOpOutput(result) { Data = data, Pairs = pairs, More = r.ReadBool() };
    }
}

/// <summary>
/// The answer to a request. <see cref="Result"/> is the request's (0, or the first failing sub-op's negative code);
/// <see cref="Version"/> the PG version of the change (writes) or of the object read; <see cref="ObjectVersion"/> the
/// object's version after the request. <see cref="MapEpoch"/> is the OSD's map epoch: with
/// <see cref="OsdResult.TryAgain"/> it tells the client which map to wait for. <see cref="Message"/> explains a
/// refusal in words (never secrets).
/// </summary>
public sealed record OsdOpReply(ulong Tid, int Result, uint MapEpoch, Eversion Version, ulong ObjectVersion, IReadOnlyList<OsdOpOutput> Outputs)
{
    private const byte Version_ = 1;

    public string Message { get; init; } = "";

    public byte[] ToBytes() => Encode().ToArray();

    /// <summary>The encoding in an array of its own (written once, not copied afterwards): to send without a copy.</summary>
    public ReadOnlyMemory<byte> Encode()
    {
        using var w = WireWriter.ForHandOver(128 + Message.Length * 3 + Outputs.Sum(o => o.Data.Length + 16 + o.Pairs.Sum(p => p.Key.Length * 3 + p.Value.Length + 8)));
        var m = w.BeginStruct(Version_, 1);
        w.WriteU64(Tid);
        w.WriteI32(Result);
        w.WriteU32(MapEpoch);
        Version.Encode(w);
        w.WriteU64(ObjectVersion);
        w.WriteString(Message);
        w.WriteU32((uint)Outputs.Count);
        foreach (var o in Outputs)
        {
            o.Encode(w);
        }
        w.EndStruct(m);
        return w.Detach();
    }

    /// <summary>Decodes a reply; the outputs' data are copies.</summary>
    public static OsdOpReply FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        return Decode(ref r);
    }

    /// <summary>Decodes a reply whose outputs' data are slices of <paramref name="memory"/> (no copy).</summary>
    public static OsdOpReply FromShared(ReadOnlyMemory<byte> memory)
    {
        var r = new WireReader(memory);
        return Decode(ref r);
    }

    private static OsdOpReply Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version_, "osd op reply");
        var tid = r.ReadU64();
        var result = r.ReadI32();
        var epoch = r.ReadU32();
        var version = Eversion.Decode(ref r);
        var objectVersion = r.ReadU64();
        var message = r.ReadString(4096);
        var outputs = new OsdOpOutput[Limits.ReadCount(ref r, 13, "outputs")];
        for (var i = 0; i < outputs.Length; i++)
        {
            outputs[i] = OsdOpOutput.Decode(ref r);
        }
        r.EndStruct(s);
        return new OsdOpReply(tid, result, epoch, version, objectVersion, outputs) { Message = message };
    }
}

/// <summary>OSD → watching client: a notify on an object it watches (answer with a <see cref="WatchNotifyAck"/>).</summary>
public sealed record WatchNotifyMessage(ulong NotifyId, ulong Cookie, int Pool, string Object, ReadOnlyMemory<byte> Payload)
{
    public byte[] ToBytes()
    {
        using var w = new WireWriter(64 + Payload.Length);
        var m = w.BeginStruct(1, 1);
        w.WriteU64(NotifyId);
        w.WriteU64(Cookie);
        w.WriteI32(Pool);
        w.WriteString(Object);
        w.WriteBytes(Payload.Span);
        w.EndStruct(m);
        return w.ToArray();
    }

    public static WatchNotifyMessage FromBytes(ReadOnlySpan<byte> b)
    {
        var r = new WireReader(b);
        var s = r.BeginStruct(1, "watch notify");
        var msg = new WatchNotifyMessage(r.ReadU64(), r.ReadU64(), r.ReadI32(), r.ReadString(Limits.MaxObjectNameBytes), r.ReadBytes(Limits.MaxPayload).ToArray());
        r.EndStruct(s);
        return msg;
    }
}

/// <summary>Client → OSD: the watcher with <see cref="Cookie"/> handled notify <see cref="NotifyId"/>.</summary>
public sealed record WatchNotifyAck(ulong NotifyId, ulong Cookie)
{
    public byte[] ToBytes()
    {
        using var w = new WireWriter(32);
        var m = w.BeginStruct(1, 1);
        w.WriteU64(NotifyId);
        w.WriteU64(Cookie);
        w.EndStruct(m);
        return w.ToArray();
    }

    public static WatchNotifyAck FromBytes(ReadOnlySpan<byte> b)
    {
        var r = new WireReader(b);
        var s = r.BeginStruct(1, "watch notify ack");
        var msg = new WatchNotifyAck(r.ReadU64(), r.ReadU64());
        r.EndStruct(s);
        return msg;
    }
}
