using Appliance.Wire.Codec;

namespace Appliance.Osd.Protocol;

/// <summary>
/// An exclusive lock held as a lease on an object (the header of a block image): who holds it — the client
/// instance (<c>entity:nonce</c>, what the blocklist fences), its entity, the host it runs on, its owner (for an NBD
/// server, the address it serves on, which tells servers on one host apart) — and until when (the primary's clock,
/// Unix ms). Kept in the object's xattr <see cref="LockProtocol.Xattr"/>.
/// </summary>
public sealed record LockHolder(string Instance, string Entity, string Host, string Owner, long ExpiresMs)
{
    public override string ToString() => $"{Instance} ({Owner} on {Host})";
}

/// <summary>How a lock call went.</summary>
public enum LockStatus : byte
{
    /// <summary>The caller holds the lock (taken, renewed, or released for release).</summary>
    Ok = 0,
    /// <summary>Someone else holds it: the output names the holder and whether its lease has run out.</summary>
    Busy = 1,
    /// <summary>Nobody holds it (renew, release: the caller lost it).</summary>
    Free = 2,
}

/// <summary>The answer of a lock call: its status, the holder after the call (null: none), and the primary's clock.</summary>
public sealed record LockReply(LockStatus Status, LockHolder? Holder, long NowMs)
{
    /// <summary>Whether the holder's lease had run out at the primary's clock.</summary>
    public bool Expired => Holder is not null && Holder.ExpiresMs <= NowMs;
}

/// <summary>
/// The wire format of the OSD's method class "lock" (node/Osd/Ops/Classes/LockClass.cs), shared by the OSD and its
/// clients. Methods: <c>acquire</c> (take or renew; with <see cref="AcquireRequest.Break"/> naming the current holder's
/// instance — which the caller has had the monitors blocklist — take it over), <c>renew</c>, <c>release</c>, <c>get</c>.
/// Every method answers a <see cref="LockReply"/>.
/// </summary>
public static class LockProtocol
{
    public const string Class = "lock";
    public const string Xattr = "lock";
    private const byte Version = 1;

    /// <summary>A request to acquire (or renew) the lock for <paramref name="Holder"/> for <paramref name="LeaseMs"/>.</summary>
    public sealed record AcquireRequest(LockHolder Holder, long LeaseMs, string Break = "");

    public static byte[] EncodeHolder(LockHolder h)
    {
        using var w = new WireWriter(128);
        var m = w.BeginStruct(Version, 1);
        w.WriteString(h.Instance);
        w.WriteString(h.Entity);
        w.WriteString(h.Host);
        w.WriteString(h.Owner);
        w.WriteI64(h.ExpiresMs);
        w.EndStruct(m);
        return w.ToArray();
    }

    public static LockHolder? DecodeHolder(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return null;
        }
        var r = new WireReader(data);
        return ReadHolder(ref r);
    }

    private static LockHolder ReadHolder(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "lock holder");
        var h = new LockHolder(r.ReadString(256), r.ReadString(256), r.ReadString(256), r.ReadString(1024), r.ReadI64());
        r.EndStruct(s);
        return h;
    }

    public static byte[] EncodeAcquire(AcquireRequest a)
    {
        using var w = new WireWriter(160);
        var m = w.BeginStruct(Version, 1);
        w.WriteBytes(EncodeHolder(a.Holder));
        w.WriteI64(a.LeaseMs);
        w.WriteString(a.Break);
        w.EndStruct(m);
        return w.ToArray();
    }

    public static AcquireRequest DecodeAcquire(ReadOnlySpan<byte> data)
    {
        var r = new WireReader(data);
        var s = r.BeginStruct(Version, "lock acquire");
        var holder = DecodeHolder(r.ReadBytes(2048)) ?? throw new WireFormatException("a lock acquire names no holder");
        var a = new AcquireRequest(holder, r.ReadI64(), r.ReadString(256));
        r.EndStruct(s);
        return a;
    }

    /// <summary>renew/release name the caller's instance (and, for renew, the lease).</summary>
    public static byte[] EncodeInstance(string instance, long leaseMs)
    {
        using var w = new WireWriter(64);
        var m = w.BeginStruct(Version, 1);
        w.WriteString(instance);
        w.WriteI64(leaseMs);
        w.EndStruct(m);
        return w.ToArray();
    }

    public static (string Instance, long LeaseMs) DecodeInstance(ReadOnlySpan<byte> data)
    {
        var r = new WireReader(data);
        var s = r.BeginStruct(Version, "lock instance");
        var result = (r.ReadString(256), r.ReadI64());
        r.EndStruct(s);
        return result;
    }

    public static byte[] EncodeReply(LockReply reply)
    {
        using var w = new WireWriter(160);
        var m = w.BeginStruct(Version, 1);
        w.WriteU8((byte)reply.Status);
        w.WriteBytes(reply.Holder is null ? [] : EncodeHolder(reply.Holder));
        w.WriteI64(reply.NowMs);
        w.EndStruct(m);
        return w.ToArray();
    }

    public static LockReply DecodeReply(ReadOnlySpan<byte> data)
    {
        var r = new WireReader(data);
        var s = r.BeginStruct(Version, "lock reply");
        var status = (LockStatus)r.ReadU8();
        var holder = DecodeHolder(r.ReadBytes(2048));
        var reply = new LockReply(status, holder, r.ReadI64());
        r.EndStruct(s);
        return reply;
    }
}
