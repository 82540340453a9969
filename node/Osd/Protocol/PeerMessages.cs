using Appliance.Maps;
using Appliance.Osd.Backend;
using Appliance.Osd.Pg;
using Appliance.Wire.Codec;

namespace Appliance.Osd.Protocol;

/// <summary>Codecs of the messages OSDs send each other. Each is a versioned structure; a malformed one fails with
/// <see cref="WireFormatException"/>, which the receiver logs and drops (never a crash).</summary>
internal static class PeerCodec
{
    public static byte[] Encode(Action<WireWriter> body, int capacity = 256)
    {
        using var w = new WireWriter(capacity);
        var m = w.BeginStruct(1, 1);
        body(w);
        w.EndStruct(m);
        return w.ToArray();
    }

    /// <summary>As <see cref="Encode"/>, into an array of its own that is handed over as it is (no second copy): for
    /// messages carrying bulk data.</summary>
    public static ReadOnlyMemory<byte> EncodeForHandOver(Action<WireWriter> body, int capacity)
    {
        using var w = WireWriter.ForHandOver(capacity);
        var m = w.BeginStruct(1, 1);
        body(w);
        w.EndStruct(m);
        return w.Detach();
    }

    public delegate T Reader<T>(ref WireReader r);

    public static T Decode<T>(ReadOnlySpan<byte> bytes, string what, Reader<T> body)
    {
        var r = new WireReader(bytes);
        return Decode(ref r, what, body);
    }

    /// <summary>As <see cref="Decode{T}(ReadOnlySpan{byte}, string, Reader{T})"/>, with bulk data sliced from
    /// <paramref name="memory"/> instead of copied.</summary>
    public static T DecodeShared<T>(ReadOnlyMemory<byte> memory, string what, Reader<T> body)
    {
        var r = new WireReader(memory);
        return Decode(ref r, what, body);
    }

    private static T Decode<T>(ref WireReader r, string what, Reader<T> body)
    {
        var s = r.BeginStruct(1, what);
        var value = body(ref r);
        r.EndStruct(s);
        return value;
    }
}

/// <summary>Primary → replica: apply this logged change (sent in version order on one session per replica).</summary>
public sealed record RepOp(PgId Pg, uint Interval, PgLogEntry Entry, PgTransaction Txn, (Eversion From, Eversion To)? Trim)
{
    public byte[] ToBytes() => Encode().ToArray();

    /// <summary>The encoding in an array of its own (the data copied once, into it): sent as it is to every replica.</summary>
    public ReadOnlyMemory<byte> Encode() => PeerCodec.EncodeForHandOver(w =>
    {
        Pg.Encode(w);
        w.WriteU32(Interval);
        Entry.Encode(w);
        Txn.Encode(w);
        w.WriteBool(Trim is not null);
        if (Trim is { } t)
        {
            t.From.Encode(w);
            t.To.Encode(w);
        }
    }, 1024 + (int)Math.Min(Txn.EncodedSizeHint, 64 << 20));

    /// <summary>Decodes a rep op; its data are copies.</summary>
    public static RepOp FromBytes(ReadOnlySpan<byte> b) => PeerCodec.Decode(b, "rep op", Body);

    /// <summary>Decodes a rep op whose data are slices of <paramref name="memory"/> (no copy): valid as long as it is.</summary>
    public static RepOp FromShared(ReadOnlyMemory<byte> memory) => PeerCodec.DecodeShared(memory, "rep op", Body);

    private static RepOp Body(ref WireReader r)
    {
        var pg = PgId.Decode(ref r);
        var interval = r.ReadU32();
        var entry = PgLogEntry.Decode(ref r);
        var txn = PgTransaction.Decode(ref r);
        (Eversion, Eversion)? trim = r.ReadBool() ? (Eversion.Decode(ref r), Eversion.Decode(ref r)) : null;
        return new RepOp(pg, interval, entry, txn, trim);
    }
}

/// <summary>Replica → primary: the change at <see cref="Version"/> is durable here (Result 0) or was refused.</summary>
public sealed record RepOpReply(PgId Pg, uint Interval, Eversion Version, int Result)
{
    public byte[] ToBytes() => PeerCodec.Encode(w =>
    {
        Pg.Encode(w);
        w.WriteU32(Interval);
        Version.Encode(w);
        w.WriteI32(Result);
    });

    public static RepOpReply FromBytes(ReadOnlySpan<byte> b) => PeerCodec.Decode(b, "rep op reply", static (ref WireReader r) =>
        new RepOpReply(PgId.Decode(ref r), r.ReadU32(), Eversion.Decode(ref r), r.ReadI32()));
}

/// <summary>Primary → member: what do you hold of this PG? Answered with a <see cref="PgNotify"/>.</summary>
public sealed record PgQuery(PgId Pg, uint Interval)
{
    public byte[] ToBytes() => PeerCodec.Encode(w =>
    {
        Pg.Encode(w);
        w.WriteU32(Interval);
    });

    public static PgQuery FromBytes(ReadOnlySpan<byte> b) => PeerCodec.Decode(b, "pg query", static (ref WireReader r) =>
        new PgQuery(PgId.Decode(ref r), r.ReadU32()));
}

/// <summary>
/// A member's answer to a <see cref="PgQuery"/>: whether it has the PG at all, its info, its whole log, how many
/// objects it misses, and whether a backfill of it is unfinished (then its log says nothing of its objects).
/// <see cref="Result"/> is <see cref="OsdResult.TryAgain"/> when the member is not yet in the asked interval.
/// </summary>
public sealed record PgNotify(int Result, bool Exists, PgInfo Info, IReadOnlyList<PgLogEntry> Log, IReadOnlyList<(string Name, uint Hash)> Missing, bool Backfilling)
{
    /// <summary>The past intervals the answering OSD knows of the PG (null: none).</summary>
    public PastIntervals? Past { get; init; }

    public byte[] ToBytes() => PeerCodec.Encode(w =>
    {
        w.WriteI32(Result);
        w.WriteBool(Exists);
        Info.Encode(w);
        w.WriteU32((uint)Log.Count);
        foreach (var e in Log)
        {
            e.Encode(w);
        }
        w.WriteU32((uint)Missing.Count);
        foreach (var (n, h) in Missing)
        {
            w.WriteString(n);
            w.WriteU32(h);
        }
        w.WriteBool(Backfilling);
        w.WriteBool(Past is not null);
        Past?.Encode(w);
    }, 1024 + Log.Count * 128);

    public static PgNotify FromBytes(ReadOnlySpan<byte> b) => PeerCodec.Decode(b, "pg notify", static (ref WireReader r) =>
    {
        var result = r.ReadI32();
        var exists = r.ReadBool();
        var info = PgInfo.Decode(ref r);
        var log = new PgLogEntry[Limits.ReadCount(ref r, 40, "log entries")];
        for (var i = 0; i < log.Length; i++)
        {
            log[i] = PgLogEntry.Decode(ref r);
        }
        var missing = new (string, uint)[Limits.ReadCount(ref r, 8, "missing")];
        for (var i = 0; i < missing.Length; i++)
        {
            missing[i] = (r.ReadString(Limits.MaxObjectNameBytes), r.ReadU32());
        }
        var backfilling = r.ReadBool();
        // Appended later: an older sender ends here.
        var past = r.Remaining > 0 && r.ReadBool() ? PastIntervals.Decode(ref r) : null;
        return new PgNotify(result, exists, info, log, missing, backfilling) { Past = past };
    });
}

/// <summary>What a <see cref="PgUpdate"/> asks a member to do.</summary>
public enum PgUpdateKind : byte
{
    /// <summary>Drop the divergent entries, append the given ones, record the objects it now misses (one store
    /// transaction): its log then equals the primary's.</summary>
    Merge = 1,
    /// <summary>Remove every object and the log, and mark a backfill under way: until <see cref="Activate"/> it is
    /// never taken as holding anything.</summary>
    BeginBackfill = 2,
    /// <summary>The member is complete: adopt the log and info given, clear the backfill mark, record the interval as
    /// started.</summary>
    Activate = 3,
}

/// <summary>Primary → member during peering; answered with a <see cref="RepOpReply"/>-like result.</summary>
public sealed record PgUpdate(PgId Pg, uint Interval, PgUpdateKind Kind, PgInfo Info, IReadOnlyList<Eversion> Divergent,
    IReadOnlyList<PgLogEntry> Append, IReadOnlyList<(string Name, uint Hash)> Missing)
{
    public byte[] ToBytes() => PeerCodec.Encode(w =>
    {
        Pg.Encode(w);
        w.WriteU32(Interval);
        w.WriteU8((byte)Kind);
        Info.Encode(w);
        w.WriteU32((uint)Divergent.Count);
        foreach (var v in Divergent)
        {
            v.Encode(w);
        }
        w.WriteU32((uint)Append.Count);
        foreach (var e in Append)
        {
            e.Encode(w);
        }
        w.WriteU32((uint)Missing.Count);
        foreach (var (n, h) in Missing)
        {
            w.WriteString(n);
            w.WriteU32(h);
        }
    }, 1024 + Append.Count * 128);

    public static PgUpdate FromBytes(ReadOnlySpan<byte> b) => PeerCodec.Decode(b, "pg update", static (ref WireReader r) =>
    {
        var pg = PgId.Decode(ref r);
        var interval = r.ReadU32();
        var kind = r.ReadU8();
        if (kind is < 1 or > 3)
        {
            throw new WireFormatException($"unknown pg update kind {kind}");
        }
        var info = PgInfo.Decode(ref r);
        var divergent = new Eversion[Limits.ReadCount(ref r, 12, "divergent")];
        for (var i = 0; i < divergent.Length; i++)
        {
            divergent[i] = Eversion.Decode(ref r);
        }
        var append = new PgLogEntry[Limits.ReadCount(ref r, 40, "entries")];
        for (var i = 0; i < append.Length; i++)
        {
            append[i] = PgLogEntry.Decode(ref r);
        }
        var missing = new (string, uint)[Limits.ReadCount(ref r, 8, "missing")];
        for (var i = 0; i < missing.Length; i++)
        {
            missing[i] = (r.ReadString(Limits.MaxObjectNameBytes), r.ReadU32());
        }
        return new PgUpdate(pg, interval, (PgUpdateKind)kind, info, divergent, append, missing);
    });
}

/// <summary>
/// A piece of one object's whole state, for recovery and backfill (pushed by the primary, or returned to a pull).
/// The first piece carries existence, version, size and xattrs; data and omap follow in order; the last piece makes
/// the object replace the member's copy atomically (it is built under a temporary name until then).
/// </summary>
public sealed record ObjectChunk(PgId Pg, uint Interval, string Name, uint Hash, bool Exists, ulong Version, long MtimeMs, long Size,
    bool First, bool Last, IReadOnlyList<KeyValuePair<string, byte[]>> Xattrs, long DataOffset, ReadOnlyMemory<byte> Data,
    IReadOnlyList<KeyValuePair<string, byte[]>> Omap)
{
    public byte[] ToBytes() => PeerCodec.Encode(w =>
    {
        Pg.Encode(w);
        w.WriteU32(Interval);
        w.WriteString(Name);
        w.WriteU32(Hash);
        w.WriteBool(Exists);
        w.WriteU64(Version);
        w.WriteI64(MtimeMs);
        w.WriteI64(Size);
        w.WriteBool(First);
        w.WriteBool(Last);
        PairCodec.WritePairs(w, Xattrs);
        w.WriteI64(DataOffset);
        w.WriteBytes(Data.Span);
        PairCodec.WritePairs(w, Omap);
    }, 512 + Data.Length);

    public static ObjectChunk FromBytes(ReadOnlySpan<byte> b) => PeerCodec.Decode(b, "object chunk", static (ref WireReader r) =>
    {
        var pg = PgId.Decode(ref r);
        var interval = r.ReadU32();
        var name = r.ReadString(Limits.MaxObjectNameBytes);
        var hash = r.ReadU32();
        var exists = r.ReadBool();
        var version = r.ReadU64();
        var mtime = r.ReadI64();
        var size = r.ReadI64();
        var first = r.ReadBool();
        var last = r.ReadBool();
        var xattrs = PairCodec.ReadPairs(ref r, Limits.MaxKeyBytes + 16, Limits.MaxValueBytes, "xattrs");
        var offset = r.ReadI64();
        var data = r.ReadBytes(Limits.MaxPayload).ToArray();
        var omap = PairCodec.ReadPairs(ref r, Limits.MaxKeyBytes + 16, Limits.MaxValueBytes, "omap");
        return new ObjectChunk(pg, interval, name, hash, exists, version, mtime, size, first, last, xattrs, offset, data, omap);
    });
}

/// <summary>Primary → member: send me the piece of an object that starts at <see cref="DataOffset"/> (data) and after
/// <see cref="OmapAfter"/> (omap), answered with an <see cref="ObjectChunk"/>. Also: list the PG's objects after a
/// cursor (<see cref="List"/> set; the cursor in Name and Hash), answered with a <see cref="PgObjectList"/>.</summary>
public sealed record PullRequest(PgId Pg, uint Interval, string Name, uint Hash, long DataOffset, string? OmapAfter, bool List)
{
    public byte[] ToBytes() => PeerCodec.Encode(w =>
    {
        Pg.Encode(w);
        w.WriteU32(Interval);
        w.WriteString(Name);
        w.WriteU32(Hash);
        w.WriteI64(DataOffset);
        w.WriteBool(OmapAfter is not null);
        w.WriteString(OmapAfter ?? "");
        w.WriteBool(List);
    });

    public static PullRequest FromBytes(ReadOnlySpan<byte> b) => PeerCodec.Decode(b, "pull request", static (ref WireReader r) =>
    {
        var pg = PgId.Decode(ref r);
        var interval = r.ReadU32();
        var name = r.ReadString(Limits.MaxObjectNameBytes);
        var hash = r.ReadU32();
        var offset = r.ReadI64();
        var hasAfter = r.ReadBool();
        var after = r.ReadString(Limits.MaxKeyBytes);
        return new PullRequest(pg, interval, name, hash, offset, hasAfter ? after : null, r.ReadBool());
    });
}

/// <summary>A page of a member's objects in listing order; <see cref="Next"/> is null at the end.</summary>
public sealed record PgObjectList(int Result, IReadOnlyList<(string Name, uint Hash)> Objects, (string Name, uint Hash)? Next)
{
    public byte[] ToBytes() => PeerCodec.Encode(w =>
    {
        w.WriteI32(Result);
        w.WriteU32((uint)Objects.Count);
        foreach (var (n, h) in Objects)
        {
            w.WriteString(n);
            w.WriteU32(h);
        }
        w.WriteBool(Next is not null);
        if (Next is { } next)
        {
            w.WriteString(next.Name);
            w.WriteU32(next.Hash);
        }
    }, 64 + Objects.Count * 64);

    public static PgObjectList FromBytes(ReadOnlySpan<byte> b) => PeerCodec.Decode(b, "pg object list", static (ref WireReader r) =>
    {
        var result = r.ReadI32();
        var objects = new (string, uint)[Limits.ReadCount(ref r, 8, "objects")];
        for (var i = 0; i < objects.Length; i++)
        {
            objects[i] = (r.ReadString(Limits.MaxObjectNameBytes), r.ReadU32());
        }
        (string, uint)? next = r.ReadBool() ? (r.ReadString(Limits.MaxObjectNameBytes), r.ReadU32()) : null;
        return new PgObjectList(result, objects, next);
    });
}

/// <summary>A plain result answer (to a push or an update).</summary>
public sealed record PeerResult(int Result, string Message)
{
    public byte[] ToBytes() => PeerCodec.Encode(w =>
    {
        w.WriteI32(Result);
        w.WriteString(Message);
    });

    public static PeerResult FromBytes(ReadOnlySpan<byte> b) => PeerCodec.Decode(b, "peer result", static (ref WireReader r) =>
        new PeerResult(r.ReadI32(), r.ReadString(4096)));
}
