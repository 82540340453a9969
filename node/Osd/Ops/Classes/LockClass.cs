using Appliance.Osd.Protocol;
using Appliance.Wire.Codec;

namespace Appliance.Osd.Ops.Classes;

/// <summary>
/// Method class "lock": one exclusive lock per object, held as a lease in its xattr <see cref="LockProtocol.Xattr"/>
/// (the writer's lock of a block image, in its header). The primary's clock judges leases; the class never breaks a
/// holder on its own: a caller that finds the lease run out (or means to force it) has the monitors blocklist the
/// holder's instance first and then names that instance in <c>acquire</c>'s Break — so the lock only moves once the
/// old holder's late writes are refused by the OSDs (fencing). Two callers racing to break the same holder: the first
/// takes it, the second finds a new holder and is told Busy.
/// </summary>
public sealed class LockClass : IObjectClass
{
    /// <summary>The longest lease a holder may ask for.</summary>
    public const long MaxLeaseMs = 10 * 60 * 1000;

    public string Name => LockProtocol.Class;

    public bool IsReadOnly(string method) => method == "get";

    public async Task<MethodResult> CallAsync(string method, IMethodContext context, ReadOnlyMemory<byte> input)
    {
        LockHolder? current;
        try
        {
            var xattrs = await context.GetXattrsAsync(context.Target);
            current = xattrs.TryGetValue(LockProtocol.Xattr, out var v) ? LockProtocol.DecodeHolder(v) : null;
        }
        catch (WireFormatException)
        {
            return new MethodResult(OsdResult.IoError, default);
        }
        var now = context.NowMs;
        LockReply Reply(LockStatus status, LockHolder? holder) => new(status, holder, now);
        try
        {
            switch (method)
            {
                case "get":
                    return Ok(Reply(current is null ? LockStatus.Free : LockStatus.Busy, current));
                case "acquire":
                {
                    var a = LockProtocol.DecodeAcquire(input.Span);
                    if (a.LeaseMs is <= 0 or > MaxLeaseMs || a.Holder.Instance.Length == 0)
                    {
                        return new MethodResult(OsdResult.InvalidArgument, default);
                    }
                    if (current is not null && current.Instance != a.Holder.Instance && current.Instance != a.Break)
                    {
                        return Ok(Reply(LockStatus.Busy, current));
                    }
                    // The lock needs its object: a missing one (an image removed meanwhile) is not recreated.
                    if (await context.StatAsync(context.Target) is null)
                    {
                        return new MethodResult(OsdResult.NotFound, default);
                    }
                    var holder = a.Holder with { ExpiresMs = now + a.LeaseMs };
                    await context.SetXattrAsync(context.Target, LockProtocol.Xattr, LockProtocol.EncodeHolder(holder));
                    return Ok(Reply(LockStatus.Ok, holder));
                }
                case "renew":
                {
                    var (instance, lease) = LockProtocol.DecodeInstance(input.Span);
                    if (lease is <= 0 or > MaxLeaseMs)
                    {
                        return new MethodResult(OsdResult.InvalidArgument, default);
                    }
                    if (current is null || current.Instance != instance)
                    {
                        // Lost: broken by a server that fenced this instance (or released). Never re-taken here.
                        return Ok(Reply(current is null ? LockStatus.Free : LockStatus.Busy, current));
                    }
                    var holder = current with { ExpiresMs = now + lease };
                    await context.SetXattrAsync(context.Target, LockProtocol.Xattr, LockProtocol.EncodeHolder(holder));
                    return Ok(Reply(LockStatus.Ok, holder));
                }
                case "release":
                {
                    var (instance, _) = LockProtocol.DecodeInstance(input.Span);
                    if (current is null || current.Instance != instance)
                    {
                        return Ok(Reply(current is null ? LockStatus.Free : LockStatus.Busy, current));
                    }
                    await context.RemoveXattrAsync(context.Target, LockProtocol.Xattr);
                    return Ok(Reply(LockStatus.Ok, null));
                }
                default:
                    return new MethodResult(OsdResult.NotSupported, default);
            }
        }
        catch (WireFormatException)
        {
            return new MethodResult(OsdResult.InvalidArgument, default);
        }
    }

    private static MethodResult Ok(LockReply reply) => new(OsdResult.Ok, LockProtocol.EncodeReply(reply));
}
