using Appliance.Wire.Codec;

namespace Appliance.Osd.Protocol;

/// <summary>What one sub-operation of a request does. Values are part of the wire format: never renumber.</summary>
public enum OsdOpCode : ushort
{
    // Reads.
    Read = 1,
    Stat = 2,
    GetXattr = 3,
    GetXattrs = 4,
    /// <summary>Omap entries in key order: after <see cref="OsdOp.Name"/>, with prefix <see cref="OsdOp.Name2"/>, at most
    /// <see cref="OsdOp.Length"/> of them (0: the server's page size); the result says if more follow.</summary>
    OmapGet = 5,
    OmapGetByKeys = 6,
    /// <summary>The allocated runs of the object's data within [<see cref="OsdOp.Offset"/>, + <see cref="OsdOp.Length"/>)
    /// (0: to its end): the output's data is (u64 offset, u64 length) pairs in order; what is not listed reads as zeros.
    /// Fails with NotFound when the object does not exist.</summary>
    MapExtents = 7,

    // Guards: a failed guard fails the whole request and changes nothing.
    AssertExists = 20,
    /// <summary>The object's version must equal <see cref="OsdOp.Offset"/> (0: the object must not exist).</summary>
    AssertVersion = 21,
    /// <summary>Xattr <see cref="OsdOp.Name"/> must compare to <see cref="OsdOp.Data"/> as <see cref="OsdOp.Flags"/> says
    /// (<see cref="CmpXattrMode"/>); a missing xattr compares as empty.</summary>
    CmpXattr = 22,

    // Writes.
    /// <summary>Creates the object; with <see cref="OsdOpFlags.Exclusive"/> fails with EEXIST if it exists.</summary>
    Create = 40,
    Write = 41,
    WriteFull = 42,
    Append = 43,
    Truncate = 44,
    Zero = 45,
    Delete = 46,
    SetXattr = 47,
    RmXattr = 48,
    OmapSet = 49,
    OmapRm = 50,
    OmapClear = 51,
    /// <summary>Removes the omap keys in [<see cref="OsdOp.Name"/>, <see cref="OsdOp.Name2"/>).</summary>
    OmapRmRange = 52,

    // Extension points.
    /// <summary>Runs method <see cref="OsdOp.Name2"/> of class <see cref="OsdOp.Name"/> on the primary with input
    /// <see cref="OsdOp.Data"/>; it may read and change objects of the PG, logged and replicated like any write.</summary>
    Call = 60,
    /// <summary>Registers a watch with cookie <see cref="OsdOp.Offset"/>.</summary>
    Watch = 61,
    Unwatch = 62,
    /// <summary>Notifies the object's watchers with payload <see cref="OsdOp.Data"/>; completes when they all
    /// acknowledged or after <see cref="OsdOp.Length"/> ms.</summary>
    Notify = 63,

    // PG operations (the request's object name is empty).
    /// <summary>Lists the PG's objects in placement-hash order after the cursor in <see cref="OsdOp.Data"/>, at most
    /// <see cref="OsdOp.Length"/>.</summary>
    PgList = 80,
}

[Flags]
public enum OsdOpFlags : uint
{
    None = 0,
    Exclusive = 1,
}

public enum CmpXattrMode : uint
{
    Equal = 1,
    NotEqual = 2,
}

/// <summary>
/// One sub-operation of a request. A request is a list of them on one object, applied atomically: all of its writes
/// take effect or none, and a failed guard or read fails the request. The fields mean what each
/// <see cref="OsdOpCode"/> says; unused ones stay empty.
/// </summary>
public sealed record OsdOp(OsdOpCode Code)
{
    public ulong Offset { get; init; }
    public ulong Length { get; init; }
    public OsdOpFlags Flags { get; init; }
    public uint Mode { get; init; }
    public string Name { get; init; } = "";
    public string Name2 { get; init; } = "";
    public ReadOnlyMemory<byte> Data { get; init; }
    public IReadOnlyList<KeyValuePair<string, byte[]>> Pairs { get; init; } = [];
    public IReadOnlyList<string> Keys { get; init; } = [];

    public bool IsWrite => Code is >= OsdOpCode.Create and < OsdOpCode.Call;

    public static OsdOp Read(ulong offset, ulong length) => new(OsdOpCode.Read) { Offset = offset, Length = length };
    public static OsdOp Stat() => new(OsdOpCode.Stat);
    public static OsdOp GetXattr(string name) => new(OsdOpCode.GetXattr) { Name = name };
    public static OsdOp GetXattrs() => new(OsdOpCode.GetXattrs);
    public static OsdOp OmapGet(string startAfter = "", string prefix = "", uint max = 0) =>
        new(OsdOpCode.OmapGet) { Name = startAfter, Name2 = prefix, Length = max };
    public static OsdOp OmapGetByKeys(IReadOnlyList<string> keys) => new(OsdOpCode.OmapGetByKeys) { Keys = keys };
    public static OsdOp MapExtents(ulong offset, ulong length) => new(OsdOpCode.MapExtents) { Offset = offset, Length = length };
    public static OsdOp AssertExists() => new(OsdOpCode.AssertExists);
    public static OsdOp AssertVersion(ulong version) => new(OsdOpCode.AssertVersion) { Offset = version };
    public static OsdOp CmpXattr(string name, CmpXattrMode mode, ReadOnlyMemory<byte> value) =>
        new(OsdOpCode.CmpXattr) { Name = name, Mode = (uint)mode, Data = value };
    public static OsdOp Create(bool exclusive) => new(OsdOpCode.Create) { Flags = exclusive ? OsdOpFlags.Exclusive : OsdOpFlags.None };
    public static OsdOp Write(ulong offset, ReadOnlyMemory<byte> data) => new(OsdOpCode.Write) { Offset = offset, Data = data };
    public static OsdOp WriteFull(ReadOnlyMemory<byte> data) => new(OsdOpCode.WriteFull) { Data = data };
    public static OsdOp Append(ReadOnlyMemory<byte> data) => new(OsdOpCode.Append) { Data = data };
    public static OsdOp Truncate(ulong size) => new(OsdOpCode.Truncate) { Offset = size };
    public static OsdOp Zero(ulong offset, ulong length) => new(OsdOpCode.Zero) { Offset = offset, Length = length };
    public static OsdOp Delete() => new(OsdOpCode.Delete);
    public static OsdOp SetXattr(string name, ReadOnlyMemory<byte> value) => new(OsdOpCode.SetXattr) { Name = name, Data = value };
    public static OsdOp RmXattr(string name) => new(OsdOpCode.RmXattr) { Name = name };
    public static OsdOp OmapSet(IReadOnlyList<KeyValuePair<string, byte[]>> pairs) => new(OsdOpCode.OmapSet) { Pairs = pairs };
    public static OsdOp OmapRm(IReadOnlyList<string> keys) => new(OsdOpCode.OmapRm) { Keys = keys };
    public static OsdOp OmapClear() => new(OsdOpCode.OmapClear);
    public static OsdOp OmapRmRange(string from, string to) => new(OsdOpCode.OmapRmRange) { Name = from, Name2 = to };
    public static OsdOp Call(string cls, string method, ReadOnlyMemory<byte> input) =>
        new(OsdOpCode.Call) { Name = cls, Name2 = method, Data = input };
    public static OsdOp Watch(ulong cookie) => new(OsdOpCode.Watch) { Offset = cookie };
    public static OsdOp Unwatch(ulong cookie) => new(OsdOpCode.Unwatch) { Offset = cookie };
    public static OsdOp Notify(ReadOnlyMemory<byte> payload, uint timeoutMs) => new(OsdOpCode.Notify) { Data = payload, Length = timeoutMs };
    public static OsdOp PgList(ReadOnlyMemory<byte> cursor, uint max) => new(OsdOpCode.PgList) { Data = cursor, Length = max };

    private const byte Version = 1;

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteU16((ushort)Code);
        w.WriteU64(Offset);
        w.WriteU64(Length);
        w.WriteU32((uint)Flags);
        w.WriteU32(Mode);
        w.WriteString(Name);
        w.WriteString(Name2);
        w.WriteBytes(Data.Span);
        PairCodec.WritePairs(w, Pairs);
        PairCodec.WriteKeys(w, Keys);
        w.EndStruct(m);
    }

    /// <summary>Decodes one sub-op. Values are copied out of the reader's buffer (it may be pooled); the data is a
    /// slice of the reader's memory when it reads memory (<see cref="WireReader.ReadBytesShared"/>), else a copy.</summary>
    public static OsdOp Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "osd op");
        var op = new OsdOp((OsdOpCode)r.ReadU16())
        {
            Offset = r.ReadU64(),
            Length = r.ReadU64(),
            Flags = (OsdOpFlags)r.ReadU32(),
            Mode = r.ReadU32(),
            Name = r.ReadString(Limits.MaxKeyBytes),
            Name2 = r.ReadString(Limits.MaxKeyBytes),
            Data = r.ReadBytesShared(Limits.MaxPayload),
        };
        var pairs = PairCodec.ReadPairs(ref r, Limits.MaxKeyBytes, Limits.MaxValueBytes, "omap pairs");
        var keys = PairCodec.ReadKeys(ref r, Limits.MaxKeyBytes, "keys");
        r.EndStruct(s);
        return op with { Pairs = pairs, Keys = keys };
    }
}
