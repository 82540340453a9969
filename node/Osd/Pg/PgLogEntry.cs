using Appliance.Osd.Protocol;
using Appliance.Wire.Codec;

namespace Appliance.Osd.Pg;

/// <summary>How a logged change left an object.</summary>
public enum LogOp : byte
{
    Modify = 1,
    Delete = 2,
}

/// <summary>One object a log entry changed: its name and placement hash, how, and the object's version before.</summary>
public readonly record struct LogObject(string Name, uint Hash, LogOp Op, ulong PriorVersion);

/// <summary>
/// One entry of a PG log: a change the primary ordered at <see cref="Version"/>, written in the same store
/// transaction as the change itself on every member. Usually one object; a server-side method may change several
/// objects of the PG in one entry. <see cref="ReqId"/>, <see cref="Result"/>, <see cref="ObjectVersion"/> and
/// <see cref="Output"/> let a resent request be answered with its first outcome instead of being applied twice.
/// </summary>
public sealed record PgLogEntry(Eversion Version, ReqId ReqId, IReadOnlyList<LogObject> Objects, int Result, ulong ObjectVersion, long MtimeMs)
{
    private const byte EncodingVersion = 1;

    /// <summary>What the request returned, kept (up to <see cref="MaxOutput"/> bytes) to answer a resend.</summary>
    public ReadOnlyMemory<byte> Output { get; init; }

    public const int MaxOutput = 4096;

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(EncodingVersion, 1);
        Version.Encode(w);
        ReqId.Encode(w);
        w.WriteU32((uint)Objects.Count);
        foreach (var o in Objects)
        {
            w.WriteString(o.Name);
            w.WriteU32(o.Hash);
            w.WriteU8((byte)o.Op);
            w.WriteU64(o.PriorVersion);
        }
        w.WriteI32(Result);
        w.WriteU64(ObjectVersion);
        w.WriteI64(MtimeMs);
        w.WriteBytes(Output.Span);
        w.EndStruct(m);
    }

    public static PgLogEntry Decode(ref WireReader r)
    {
        var s = r.BeginStruct(EncodingVersion, "pg log entry");
        var version = Eversion.Decode(ref r);
        var reqid = ReqId.Decode(ref r);
        var objects = new LogObject[Limits.ReadCount(ref r, 17, "log objects")];
        for (var i = 0; i < objects.Length; i++)
        {
            var name = r.ReadString(Limits.MaxObjectNameBytes);
            var hash = r.ReadU32();
            var op = r.ReadU8() switch
            {
                1 => LogOp.Modify,
                2 => LogOp.Delete,
                var b => throw new WireFormatException($"pg log entry {version}: unknown op {b}"),
            };
            objects[i] = new LogObject(name, hash, op, r.ReadU64());
        }
        var entry = new PgLogEntry(version, reqid, objects, r.ReadI32(), r.ReadU64(), r.ReadI64()) { Output = r.ReadBytes(MaxOutput).ToArray() };
        r.EndStruct(s);
        return entry;
    }

    public byte[] ToBytes()
    {
        using var w = new WireWriter(128);
        Encode(w);
        return w.ToArray();
    }

    public static PgLogEntry FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        return Decode(ref r);
    }
}
