using System.Globalization;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Wire.Auth;

namespace Appliance.Monitor.Maps;

public static partial class MonOperations
{
    /// <summary>Longest blocklist duration: a year.</summary>
    public const long MaxBlocklistSeconds = 365L * 86400;

    /// <summary>
    /// Checks a client instance as the blocklist keys it: <c>ENTITY:NONCE</c>, an entity name (TYPE.ID) and the
    /// process's nonce, a decimal number (<c>client.vm:4711</c>). Null when valid.
    /// </summary>
    public static MonError? ValidateInstance(string instance)
    {
        var colon = instance.LastIndexOf(':');
        var nonce = colon < 0 ? "" : instance[(colon + 1)..];
        if (colon <= 0 || nonce.Length == 0 || nonce.Length > 20 || !ulong.TryParse(nonce, NumberStyles.None, CultureInfo.InvariantCulture, out _))
        {
            return new MonError(MonErrorCode.InvalidArgument,
                $"'{instance}' is not a client instance: write the entity, a colon and its nonce, as in client.vm:4711");
        }
        try
        {
            Keyring.ValidateEntityName(instance[..colon]);
        }
        catch (FormatException e)
        {
            return new MonError(MonErrorCode.InvalidArgument, $"'{instance}': {e.Message}");
        }
        return null;
    }

    private static Result BlocklistAddOp(Context ctx, OsdBlocklistAdd c)
    {
        if (ValidateInstance(c.Instance) is { } bad)
        {
            return Result.Fail(bad.Code, bad.Message);
        }
        if (c.ExpireSeconds < 0 || c.ExpireSeconds > MaxBlocklistSeconds)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"a blocklist entry lasts 1 to {MaxBlocklistSeconds} seconds (0: mon_osd_blocklist_default_expire), not {c.ExpireSeconds}");
        }
        var seconds = c.ExpireSeconds > 0 ? c.ExpireSeconds : ctx.Config.GetInt("mon_osd_blocklist_default_expire");
        var expires = ctx.NowMs + (seconds * 1000);
        var until = DateTimeOffset.FromUnixTimeMilliseconds(expires).ToString("u", CultureInfo.InvariantCulture);
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx) with { BlocklistAdds = new Dictionary<string, long> { [c.Instance] = expires } }),
            $"blocklisted {c.Instance} until {until}");
    }

    private static Result BlocklistRemoveOp(Context ctx, OsdBlocklistRemove c)
    {
        if (!ctx.Osd.Blocklist.ContainsKey(c.Instance))
        {
            return Result.Fail(MonErrorCode.NotFound, $"{c.Instance} is not blocklisted");
        }
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx) with { BlocklistRemovals = [c.Instance] }), $"un-blocklisted {c.Instance}");
    }
}
