using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Wire.Auth;

namespace Appliance.Monitor.Maps;

public static partial class MonOperations
{
    /// <summary>Longest a join token may live.</summary>
    public const long MaxJoinTokenTtlSeconds = 7 * 24 * 3600;

    /// <summary>What an unused join token may do: read the maps (the joining node learns the monitors with it).</summary>
    private static readonly ImmutableSortedDictionary<string, string> JoinTokenCaps =
        ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("mon", "allow r")]);

    /// <summary>What a joined node's key may do: create OSDs and monitors (`osd create` and `mon add` need
    /// mon 'allow *'), and reach the OSDs.</summary>
    public static IReadOnlyDictionary<string, string> NodeCaps { get; } = new Dictionary<string, string> { ["mon"] = "allow *", ["osd"] = "allow *" };

    private static Result JoinTokenCreateOp(Context ctx, JoinTokenCreate c)
    {
        if (CheckName("node", c.Node, 63) is { } bad)
        {
            return Result.Fail(bad.Code, bad.Message);
        }
        if (c.TtlSeconds is <= 0 or > MaxJoinTokenTtlSeconds)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"a join token lives 1 s to {MaxJoinTokenTtlSeconds} s, not {c.TtlSeconds}");
        }
        var auth = ctx.State.Auth;
        var node = JoinTokenCreate.NodeEntityOf(c.Node);
        if (auth.Find(node) is not null)
        {
            return Result.Fail(MonErrorCode.AlreadyExists, $"node {c.Node} has joined already ({node} exists); remove it with `appliance node rm {c.Node}` first, or choose another name");
        }
        var entity = JoinTokenCreate.EntityOf(c.Node);
        // Tokens past their expiry (used ones too) go now; the one for this node is replaced.
        var stale = auth.Entities.Values.Where(e => e.ExpiresMs != 0 && (e.ExpiredAt(ctx.NowMs) || e.Name == entity)).Select(e => e.Name).ToList();
        var expires = ctx.NowMs + (c.TtlSeconds * 1000);
        var token = new AuthEntity(entity, c.Key, JoinTokenCaps, expires);
        var inc = AuthInc(ctx, upserts: [token], removals: [.. stale.Where(n => n != entity)]);
        return Result.Changed(new ClusterIncrement(Auth: inc),
            $"join token for node {c.Node}, good until {DateTimeOffset.FromUnixTimeMilliseconds(expires).ToString("u", CultureInfo.InvariantCulture)}");
    }

    private static Result JoinConsumeOp(Context ctx, JoinConsume c, string who)
    {
        var entity = JoinTokenCreate.EntityOf(c.Node);
        if (who != entity)
        {
            return Result.Fail(MonErrorCode.Refused, $"only the holder of node {c.Node}'s join token ({entity}) may join it; {who} may not");
        }
        var auth = ctx.State.Auth;
        if (auth.Find(entity) is not { ExpiresMs: not 0 } token)
        {
            return Result.Fail(MonErrorCode.NotFound, $"there is no join token for node {c.Node}; make one with `appliance join-token {c.Node}` on a member");
        }
        if (token.Caps.Count == 0)
        {
            return Result.Fail(MonErrorCode.Refused, $"the join token for node {c.Node} was used already; make a new one with `appliance join-token {c.Node}` on a member");
        }
        if (token.ExpiredAt(ctx.NowMs))
        {
            return Result.Fail(MonErrorCode.Refused,
                $"the join token for node {c.Node} expired at {DateTimeOffset.FromUnixTimeMilliseconds(token.ExpiresMs).ToString("u", CultureInfo.InvariantCulture)}; make a new one with `appliance join-token {c.Node}` on a member");
        }
        var node = JoinTokenCreate.NodeEntityOf(c.Node);
        if (auth.Find(node) is not null)
        {
            return Result.Fail(MonErrorCode.AlreadyExists, $"node {c.Node} has joined already ({node} exists)");
        }
        // The token is kept, with no caps, until it expires: a second use is told it was used (not just refused).
        var used = token with { Caps = ImmutableSortedDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal) };
        var member = new AuthEntity(node, c.NodeKey, CapsOf(NodeCaps));
        var keyring = new Keyring();
        if (auth.Find("client.admin") is { } admin)
        {
            keyring.Add(admin.ToKeyringEntry());
        }
        return new Result(new ClusterIncrement(Auth: AuthInc(ctx, upserts: [used, member])), null, $"node {c.Node} joined as {node}",
            Encoding.UTF8.GetBytes(keyring.Format()));
    }
}
