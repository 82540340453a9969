using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Tests.Maps;

/// <summary>
/// Join tokens as the monitors keep them (MonOperations.Join): an entity client.join.NODE with the token's key and
/// an expiry from the proposer's clock; spent once, by that entity only, before the expiry — the clock injected, no
/// sleeps.
/// </summary>
public sealed class JoinTokenTests
{
    private const string Token = "client.join.n2";

    private static MonOutcome Consume(Cluster c, string who = Token, string node = "n2") =>
        c.Run(new JoinConsume(node, Cluster.Key(30)), who);

    [Fact]
    public void A_token_is_spent_once_by_its_own_entity_and_makes_the_node_key()
    {
        var c = new Cluster();
        var made = c.Must(new JoinTokenCreate("n2", Cluster.Key(20), 3600));
        Assert.Contains("join token for node n2, good until 2026-01-01 01:00:00Z", made.Message);
        var token = c.State.Auth.Find(Token)!;
        Assert.Equal(Cluster.T0.AddHours(1).ToUnixTimeMilliseconds(), token.ExpiresMs);
        Assert.Equal("allow r", token.Caps["mon"]);

        // Another entity (even the admin) may not spend it.
        var stolen = Consume(c, who: "client.admin");
        Assert.False(stolen.Ok);
        Assert.Contains("only the holder", stolen.Error!.Message);

        c.Now = Cluster.T0.AddMinutes(59);
        var joined = Consume(c);
        Assert.True(joined.Ok, joined.Error?.Message);
        var node = c.State.Auth.Find("client.node.n2")!;
        Assert.Equal(Cluster.Key(30), node.Key);
        Assert.Equal("allow *", node.Caps["mon"]);
        Assert.Empty(c.State.Auth.Find(Token)!.Caps);
        // The data: client.admin's keyring, for the node.
        Assert.Contains("[client.admin]", System.Text.Encoding.UTF8.GetString(joined.Data!));

        var before = c.State.ToBytes();
        var again = Consume(c);
        Assert.False(again.Ok);
        Assert.Equal(MonErrorCode.Refused, again.Error!.Code);
        Assert.Contains("was used already", again.Error.Message);
        Assert.Equal(before, c.State.ToBytes());

        // A node that joined gets no new token under its name until it is removed.
        c.Refused(new JoinTokenCreate("n2", Cluster.Key(21), 3600), MonErrorCode.AlreadyExists, "has joined already");
    }

    [Fact]
    public void An_expired_token_is_refused_and_dropped_when_the_next_token_is_made()
    {
        var c = new Cluster();
        c.Must(new JoinTokenCreate("n2", Cluster.Key(20), 60));
        c.Now = Cluster.T0.AddSeconds(60);
        var late = Consume(c);
        Assert.False(late.Ok);
        Assert.Contains("expired at 2026-01-01 00:01:00Z", late.Error!.Message);
        Assert.True(c.State.Auth.Find(Token)!.ExpiredAt(c.Now.ToUnixTimeMilliseconds()));
        Assert.False(c.State.Auth.Find(Token)!.ExpiredAt(c.Now.AddMilliseconds(-1).ToUnixTimeMilliseconds()));

        c.Must(new JoinTokenCreate("n3", Cluster.Key(22), 60));
        Assert.Null(c.State.Auth.Find(Token));
        Assert.NotNull(c.State.Auth.Find("client.join.n3"));
        // A token made again replaces the old one (its key too).
        c.Must(new JoinTokenCreate("n3", Cluster.Key(23), 60));
        Assert.Equal(Cluster.Key(23), c.State.Auth.Find("client.join.n3")!.Key);
    }

    [Fact]
    public void Bad_names_and_lifetimes_are_refused_and_unknown_tokens_are_not_found()
    {
        var c = new Cluster();
        c.Refused(new JoinTokenCreate("bad name", Cluster.Key(20), 60), MonErrorCode.InvalidArgument);
        c.Refused(new JoinTokenCreate("n2", Cluster.Key(20), 0), MonErrorCode.InvalidArgument, "1 s to");
        c.Refused(new JoinTokenCreate("n2", Cluster.Key(20), MonOperations.MaxJoinTokenTtlSeconds + 1), MonErrorCode.InvalidArgument);
        var none = Consume(c);
        Assert.Equal(MonErrorCode.NotFound, none.Error!.Code);
    }

    [Fact]
    public void The_commands_and_an_entity_with_an_expiry_round_trip()
    {
        foreach (MonCommand command in new MonCommand[] { new JoinTokenCreate("n2", Cluster.Key(1), 3600), new JoinConsume("n2", Cluster.Key(2)) })
        {
            using var w = new WireWriter();
            MonCommandCodec.Encode(w, command);
            var r = new WireReader(w.WrittenSpan);
            Assert.Equal(command, MonCommandCodec.Decode(ref r));
        }
        var c = new Cluster();
        c.Must(new JoinTokenCreate("n2", Cluster.Key(20), 3600));
        var back = ClusterState.FromBytes(c.State.ToBytes());
        Assert.Equal(c.State.Auth.Find(Token)!.ExpiresMs, back.Auth.Find(Token)!.ExpiresMs);
        Assert.Equal(c.State.ToBytes(), back.ToBytes());
    }
}
