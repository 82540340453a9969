using System.Collections.Immutable;
using System.Globalization;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Wire.Auth;

namespace Appliance.Monitor.Maps;

public static partial class MonOperations
{
    /// <summary>Most monitors a monmap may list.</summary>
    public const int MaxMonitors = 9;

    /// <summary>Checks an entity name (TYPE.ID) and its caps (known services, each parsed by the messenger's
    /// capability parser). Null when valid.</summary>
    public static MonError? ValidateEntity(string entity, IReadOnlyDictionary<string, string> caps)
    {
        ArgumentNullException.ThrowIfNull(caps);
        try
        {
            Keyring.ValidateEntityName(entity);
        }
        catch (FormatException e)
        {
            return new MonError(MonErrorCode.InvalidArgument, e.Message);
        }
        foreach (var (service, text) in caps)
        {
            if (!AuthEntity.Services.Contains(service))
            {
                return new MonError(MonErrorCode.InvalidArgument, $"unknown service '{service}' in the caps of {entity}; use {string.Join(", ", AuthEntity.Services)}");
            }
            try
            {
                ServiceCaps.Parse(text);
            }
            catch (CapabilityFormatException e)
            {
                return new MonError(MonErrorCode.InvalidArgument, $"{service} caps of {entity}: {e.Message}");
            }
        }
        return null;
    }

    private static ImmutableSortedDictionary<string, string> CapsOf(IReadOnlyDictionary<string, string> caps) =>
        caps.ToImmutableSortedDictionary(kv => kv.Key, kv => kv.Value.Trim(), StringComparer.Ordinal);

    private static AuthIncrement AuthInc(Context ctx, IReadOnlyList<AuthEntity>? upserts = null, IReadOnlyList<string>? removals = null) =>
        new(ctx.State.Auth.MapVersion + 1, upserts ?? [], removals ?? []);

    private static Result ServiceKeyRotateOp(Context ctx, ServiceKeyRotate c)
    {
        var auth = ctx.State.Auth;
        if (!AuthDb.TicketServices.Contains(c.Service))
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"no tickets are issued for service '{c.Service}'; only for {string.Join(", ", AuthDb.TicketServices)}");
        }
        if (!auth.NeedsRotation(c.Service, ctx.NowMs))
        {
            // Another rotation got there first (the leader may propose twice before the first one applies).
            return Result.Unchanged($"the {c.Service} service key is fresh");
        }
        var kept = (auth.ServiceKeys.GetValueOrDefault(c.Service) ?? []).RemoveAll(k => k.ExpiresMs <= ctx.NowMs);
        var id = auth.NewestKey(c.Service) is { } newest ? newest.Id + 1 : 1;
        var keys = kept.Add(new ServiceKey(id, c.Key, ctx.NowMs + (long)AuthDb.KeyLifetime.TotalMilliseconds));
        var inc = AuthInc(ctx) with { ServiceKeys = new Dictionary<string, ImmutableList<ServiceKey>> { [c.Service] = keys } };
        return Result.Changed(new ClusterIncrement(Auth: inc), $"{c.Service} service key {id}");
    }

    private static Result AuthAddOp(Context ctx, AuthAdd c)
    {
        if (ValidateEntity(c.Entity, c.Caps) is { } bad)
        {
            return Result.Fail(bad.Code, bad.Message);
        }
        var caps = CapsOf(c.Caps);
        if (ctx.State.Auth.Find(c.Entity) is { } existing)
        {
            if (existing.Key.Equals(c.Key) && existing.Caps.SequenceEqual(caps))
            {
                return Result.Unchanged($"{c.Entity} already exists with these caps");
            }
            return Result.Fail(MonErrorCode.AlreadyExists, $"{c.Entity} already exists; change its capabilities with auth caps, or auth rm it first");
        }
        return Result.Changed(new ClusterIncrement(Auth: AuthInc(ctx, upserts: [new AuthEntity(c.Entity, c.Key, caps)])), $"added {c.Entity}");
    }

    private static Result AuthCapsOp(Context ctx, AuthCaps c)
    {
        if (ValidateEntity(c.Entity, c.Caps) is { } bad)
        {
            return Result.Fail(bad.Code, bad.Message);
        }
        var existing = ctx.State.Auth.Find(c.Entity);
        if (existing is null)
        {
            return Result.Fail(MonErrorCode.NotFound, $"{c.Entity} does not exist; create it with auth add");
        }
        var caps = CapsOf(c.Caps);
        if (existing.Caps.SequenceEqual(caps))
        {
            return Result.Unchanged($"{c.Entity} already has these caps");
        }
        var updated = existing with { Caps = caps };
        if (LosesLastAdmin(ctx, existing, updated))
        {
            return Result.Fail(MonErrorCode.Refused, $"{c.Entity} is the last entity with mon 'allow *'; give another entity that capability first");
        }
        return Result.Changed(new ClusterIncrement(Auth: AuthInc(ctx, upserts: [updated])), $"updated caps of {c.Entity}");
    }

    private static Result AuthRemoveOp(Context ctx, AuthRemove c)
    {
        var existing = ctx.State.Auth.Find(c.Entity);
        if (existing is null)
        {
            return Result.Fail(MonErrorCode.NotFound, $"{c.Entity} does not exist");
        }
        if (LosesLastAdmin(ctx, existing, null))
        {
            return Result.Fail(MonErrorCode.Refused, $"{c.Entity} is the last entity with mon 'allow *'; removing it would lock everyone out");
        }
        return Result.Changed(new ClusterIncrement(Auth: AuthInc(ctx, removals: [c.Entity])), $"removed {c.Entity}");
    }

    private static bool IsAdmin(AuthEntity e) => Authorizer.IsAllowed(e.ParsedCaps(), "mon", Access.All);

    /// <summary>True if changing <paramref name="before"/> into <paramref name="after"/> (null: removing it) leaves no
    /// entity able to administer the monitors while one could before.</summary>
    private static bool LosesLastAdmin(Context ctx, AuthEntity before, AuthEntity? after) =>
        IsAdmin(before) && (after is null || !IsAdmin(after)) && !ctx.State.Auth.Entities.Values.Any(e => e.Name != before.Name && IsAdmin(e));

    private static ConfigIncrement ConfigInc(Context ctx, string name, string? value) =>
        new(ctx.Config.MapVersion + 1, [new KeyValuePair<string, string?>(name, value)]);

    private static MonError UnknownOption(string name) =>
        new(MonErrorCode.InvalidArgument, $"unknown configuration option '{name}'; known options: {string.Join(", ", ConfigOptions.Known.Keys.Order(StringComparer.Ordinal))}");

    private static Result ConfigSetOp(Context ctx, ConfigSet c)
    {
        var option = ConfigOptions.Find(c.Name);
        if (option is null)
        {
            var e = UnknownOption(c.Name);
            return Result.Fail(e.Code, e.Message);
        }
        var value = option.Canonicalize(c.Value, out var error);
        if (error is not null)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, error);
        }
        if (ctx.Config.Values.TryGetValue(c.Name, out var current) && current == value)
        {
            return Result.Unchanged($"{c.Name} is already {value}");
        }
        return Result.Changed(new ClusterIncrement(Config: ConfigInc(ctx, c.Name, value)), $"{c.Name} = {value}");
    }

    private static Result ConfigRemoveOp(Context ctx, ConfigRemove c)
    {
        var option = ConfigOptions.Find(c.Name);
        if (option is null)
        {
            var e = UnknownOption(c.Name);
            return Result.Fail(e.Code, e.Message);
        }
        if (!ctx.Config.Values.ContainsKey(c.Name))
        {
            return Result.Unchanged($"{c.Name} is not set (default {option.Default})");
        }
        return Result.Changed(new ClusterIncrement(Config: ConfigInc(ctx, c.Name, null)), $"{c.Name} reset to its default {option.Default}");
    }

    private static MonError? CheckAddress(string address)
    {
        var colon = address.LastIndexOf(':');
        if (colon <= 0 || address.Any(char.IsWhiteSpace)
            || !int.TryParse(address.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            return new MonError(MonErrorCode.InvalidArgument, $"'{address}' is not a monitor address; write HOST:PORT such as 10.0.0.1:6789");
        }
        return null;
    }

    private static Result MonAddOp(Context ctx, MonAdd c)
    {
        if ((CheckName("monitor name", c.Name) ?? CheckAddress(c.Address)) is { } bad)
        {
            return Result.Fail(bad.Code, bad.Message);
        }
        var mons = ctx.State.Mon;
        if (mons.Find(c.Name) is not null)
        {
            return Result.Fail(MonErrorCode.AlreadyExists, $"monitor {c.Name} already exists");
        }
        if (mons.Monitors.FirstOrDefault(m => m.Address == c.Address) is { } same)
        {
            return Result.Fail(MonErrorCode.AlreadyExists, $"address {c.Address} belongs to monitor {same.Name}");
        }
        if (mons.Monitors.Count >= MaxMonitors)
        {
            return Result.Fail(MonErrorCode.Refused, $"the cluster already has {mons.Monitors.Count} monitors, the most it may have");
        }
        return Result.Changed(new ClusterIncrement(Mon: new MonMapIncrement(mons.Epoch + 1, [new MonInfo(c.Name, c.Address, 0, mons.NextId)], [])),
            $"monitor {c.Name} added at {c.Address} (member id {mons.NextId})");
    }

    private static Result MonRemoveOp(Context ctx, MonRemove c)
    {
        var mons = ctx.State.Mon;
        if (mons.Find(c.Name) is null)
        {
            return Result.Fail(MonErrorCode.NotFound, $"monitor {c.Name} does not exist");
        }
        if (mons.Monitors.Count == 1)
        {
            return Result.Fail(MonErrorCode.Refused, $"monitor {c.Name} is the last one; add another before removing it");
        }
        return Result.Changed(new ClusterIncrement(Mon: new MonMapIncrement(mons.Epoch + 1, [], [c.Name])), $"monitor {c.Name} removed");
    }
}
