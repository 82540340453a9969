namespace Appliance.Wire.Auth;

/// <summary>What an operation needs.</summary>
[Flags]
public enum Access
{
    None = 0,
    Read = 1,
    Write = 2,
    Execute = 4,
    All = Read | Write | Execute,
}

/// <summary>One `allow` clause: an access set, optionally limited to one pool.</summary>
public sealed record CapGrant(Access Access, string? Pool)
{
    public override string ToString() =>
        (Access == Access.All && Pool is null ? "allow *" : $"allow {Letters(Access)}") + (Pool is null ? "" : $" pool={Pool}");

    private static string Letters(Access a) =>
        a == Access.All ? "*" : (a.HasFlag(Access.Read) ? "r" : "") + (a.HasFlag(Access.Write) ? "w" : "") + (a.HasFlag(Access.Execute) ? "x" : "");
}

/// <summary>A capability string could not be parsed; the message names the token.</summary>
public sealed class CapabilityFormatException(string message) : Exception(message);

/// <summary>
/// The capabilities of one entity for one service (`mon`, `osd`, ...), parsed from Ceph's syntax:
/// `allow r`, `allow rw pool=vm`, `allow *`, several clauses separated by `,` or `;`.
/// </summary>
public sealed class ServiceCaps
{
    private ServiceCaps(IReadOnlyList<CapGrant> grants) => Grants = grants;

    public IReadOnlyList<CapGrant> Grants { get; }

    public static ServiceCaps Parse(string text)
    {
        var grants = new List<CapGrant>();
        foreach (var raw in text.Split([',', ';'], StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var words = raw.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (words.Length == 0 || words[0] != "allow")
            {
                throw new CapabilityFormatException($"capability clause '{raw}' must start with 'allow'");
            }
            if (words.Length < 2)
            {
                throw new CapabilityFormatException($"capability clause '{raw}' names no access (r, w, x, rw, rwx or *)");
            }
            var access = ParseAccess(words[1], raw);
            string? pool = null;
            foreach (var word in words.Skip(2))
            {
                if (word.StartsWith("pool=", StringComparison.Ordinal) && word.Length > 5 && pool is null)
                {
                    pool = word[5..].Trim('"', '\'');
                }
                else
                {
                    throw new CapabilityFormatException($"unknown or repeated restriction '{word}' in '{raw}' (only pool=NAME is supported)");
                }
            }
            grants.Add(new CapGrant(access, pool));
        }
        if (grants.Count == 0)
        {
            throw new CapabilityFormatException("empty capability; write for example 'allow r' or 'allow rw pool=vm'");
        }
        return new ServiceCaps(grants);
    }

    private static Access ParseAccess(string word, string clause)
    {
        if (word == "*")
        {
            return Access.All;
        }
        var access = Access.None;
        foreach (var c in word)
        {
            var bit = c switch
            {
                'r' => Access.Read,
                'w' => Access.Write,
                'x' => Access.Execute,
                _ => throw new CapabilityFormatException($"unknown access '{word}' in '{clause}' (use r, w, x, rw, rwx or *)"),
            };
            if ((access & bit) != 0)
            {
                throw new CapabilityFormatException($"access '{word}' in '{clause}' repeats '{c}'");
            }
            access |= bit;
        }
        return access;
    }

    public override string ToString() => string.Join(", ", Grants);
}

/// <summary>An entity's capabilities for every service; services without an entry grant nothing.</summary>
public sealed class EntityCaps
{
    private readonly Dictionary<string, ServiceCaps> _services;

    public EntityCaps(IReadOnlyDictionary<string, string> byService)
    {
        _services = byService.ToDictionary(kv => kv.Key, kv => ServiceCaps.Parse(kv.Value), StringComparer.Ordinal);
    }

    public static EntityCaps None { get; } = new(new Dictionary<string, string>());

    public IReadOnlyDictionary<string, string> ToDictionary() =>
        _services.ToDictionary(kv => kv.Key, kv => kv.Value.ToString(), StringComparer.Ordinal);

    internal ServiceCaps? For(string service) => _services.GetValueOrDefault(service);
}

/// <summary>The one function every operation's permission passes through.</summary>
public static class Authorizer
{
    /// <summary>
    /// True when the grants of <paramref name="caps"/> for <paramref name="service"/> that apply to
    /// <paramref name="pool"/> (grants without a pool apply to every pool) together cover <paramref name="need"/>.
    /// </summary>
    public static bool IsAllowed(EntityCaps caps, string service, Access need, string? pool = null)
    {
        var serviceCaps = caps.For(service);
        if (serviceCaps is null)
        {
            return need == Access.None;
        }
        var granted = Access.None;
        foreach (var g in serviceCaps.Grants)
        {
            if (g.Pool is null || (pool is not null && string.Equals(g.Pool, pool, StringComparison.Ordinal)))
            {
                granted |= g.Access;
            }
        }
        return (need & ~granted) == 0;
    }

    /// <summary>Throws <see cref="NotAuthorizedException"/> naming what was missing.</summary>
    public static void Demand(string entity, EntityCaps caps, string service, Access need, string? pool = null)
    {
        if (!IsAllowed(caps, service, need, pool))
        {
            throw new NotAuthorizedException($"{entity} may not {need.ToString().ToLowerInvariant()} on {service}{(pool is null ? "" : $" pool {pool}")}");
        }
    }
}

/// <summary>An authenticated entity lacks the capability for an operation.</summary>
public sealed class NotAuthorizedException(string message) : Exception(message);
