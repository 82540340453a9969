using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Daemon;
using Appliance.Monitor.Maps;
using Appliance.Wire.Auth;

namespace Appliance.Monitor.Tests.Maps;

/// <summary>The ticket services' rotating keys in the auth database, and the tickets and keys the monitors grant
/// from them.</summary>
public class ServiceKeyTests
{
    private static long Ms(DateTimeOffset t) => t.ToUnixTimeMilliseconds();

    [Fact]
    public void Service_keys_rotate_once_they_are_old_and_expired_ones_are_dropped()
    {
        var c = new Cluster();
        Assert.True(c.State.Auth.NeedsRotation("osd", Ms(c.Now)));
        c.Must(new ServiceKeyRotate("osd", Cluster.Key(1)));
        var first = c.State.Auth.NewestKey("osd")!;
        Assert.Equal(1u, first.Id);
        Assert.Equal(Ms(c.Now + AuthDb.KeyLifetime), first.ExpiresMs);
        Assert.False(c.State.Auth.NeedsRotation("osd", Ms(c.Now)));

        // The leader may propose twice before the first applies: the second changes nothing.
        Assert.Null(c.Run(new ServiceKeyRotate("osd", Cluster.Key(2))).Increment);
        Assert.True(c.State.Auth.NewestKey("osd")!.Key.Equals(Cluster.Key(1)));

        c.Now += AuthDb.RotateAfter;
        Assert.True(c.State.Auth.NeedsRotation("osd", Ms(c.Now)));
        c.Must(new ServiceKeyRotate("osd", Cluster.Key(2)));
        Assert.Equal([1u, 2u], c.State.Auth.ServiceKeys["osd"].Select(k => k.Id));

        // The first key's life is over: the next rotation drops it.
        c.Now = Cluster.T0 + AuthDb.KeyLifetime;
        c.Must(new ServiceKeyRotate("osd", Cluster.Key(3)));
        Assert.Equal([2u, 3u], c.State.Auth.ServiceKeys["osd"].Select(k => k.Id));
        Assert.Null(c.State.Auth.NewestKey("mgr"));

        c.Refused(new ServiceKeyRotate("mon", Cluster.Key(4)), MonErrorCode.InvalidArgument, "no tickets");
        // The monitors' own housekeeping: not in the audit log, and no key in any description.
        Assert.DoesNotContain(c.State.Audit.Entries, e => e.Command.Contains("rotate", StringComparison.Ordinal));
        Assert.DoesNotContain(Cluster.Key(3).ToBase64(), new ServiceKeyRotate("osd", Cluster.Key(3)).Describe(), StringComparison.Ordinal);

        // The keys survive encoding of the database and of the increments, and replaying the increments.
        var decoded = AuthDb.FromBytes(c.State.Auth.ToBytes());
        Assert.Equal(c.State.Auth.ServiceKeys["osd"], decoded.ServiceKeys["osd"]);
        var replayed = c.Initial;
        foreach (var inc in c.Increments)
        {
            replayed = replayed.Apply(ClusterIncrement.FromBytes(inc.ToBytes()));
        }
        Assert.Equal(c.State.Auth.ToBytes(), replayed.Auth.ToBytes());
    }

    [Fact]
    public void Tickets_go_to_known_entities_with_their_caps_and_keys_only_to_the_services_own_daemons()
    {
        var c = new Cluster();
        var vmKey = Cluster.Key(10);
        var osdKey = Cluster.Key(11);
        c.Must(new AuthAdd("client.vm", Cluster.Caps(("mon", "allow r"), ("osd", "allow rw pool=vm")), vmKey));
        c.Must(new AuthAdd("osd.0", Cluster.Caps(("mon", "allow rx")), osdKey));

        // No key yet: a clear refusal, not a ticket nobody can check.
        var early = ServiceTickets.Grant(c.State, "client.vm", "osd", c.Now);
        Assert.Equal(MonReplyStatus.Failed, early.Status);
        Assert.Contains("no current key", early.Message, StringComparison.Ordinal);

        c.Must(new ServiceKeyRotate("osd", Cluster.Key(12)));
        var grant = ServiceTickets.Grant(c.State, "client.vm", "osd", c.Now);
        Assert.Equal(MonReplyStatus.Ok, grant.Status);
        var ticket = TicketGrants.OpenGrant(grant.Data, vmKey);
        Assert.Equal(c.Now + AuthDb.TicketTtl, ticket.Expires);
        // The session key is sealed for client.vm: nobody else opens the grant.
        Assert.Throws<AuthenticationException>(() => TicketGrants.OpenGrant(grant.Data, osdKey));

        // osd.0 gets the service's keys and verifies the ticket with them.
        var keys = ServiceTickets.GrantKeys(c.State, "osd.0", "osd");
        Assert.Equal(MonReplyStatus.Ok, keys.Status);
        var verifier = new TicketVerifier(TicketGrants.OpenKeys(keys.Data, osdKey), TimeSpan.FromMinutes(5));
        var identity = verifier.Verify(ticket.Ticket, Tickets.Authenticator(ticket.SessionKey, c.Now), c.Now);
        Assert.Equal("client.vm", identity.Entity);
        Assert.True(Authorizer.IsAllowed(identity.Caps, "osd", Access.Write, "vm"));
        Assert.False(Authorizer.IsAllowed(identity.Caps, "osd", Access.Write, "other"));
        Assert.Throws<AuthenticationException>(() => TicketGrants.OpenKeys(keys.Data, vmKey));

        // Keys only for the service's own daemons; tickets only for known entities and ticket services.
        Assert.Equal(MonReplyStatus.Denied, ServiceTickets.GrantKeys(c.State, "client.vm", "osd").Status);
        Assert.Equal(MonReplyStatus.Denied, ServiceTickets.GrantKeys(c.State, "osd.9", "osd").Status);
        Assert.Equal(MonReplyStatus.Denied, ServiceTickets.GrantKeys(c.State, "osd.0", "mgr").Status);
        Assert.Equal(MonReplyStatus.Invalid, ServiceTickets.Grant(c.State, "client.vm", "mon", c.Now).Status);
        var stranger = ServiceTickets.Grant(c.State, "client.nobody", "osd", c.Now);
        Assert.Equal((int)MonErrorCode.NotFound, stranger.Code);

        // A ticket never outlives the key that sealed it: near the key's end, the ticket is shorter.
        var late = c.Now + AuthDb.KeyLifetime - TimeSpan.FromMinutes(10);
        Assert.Equal(c.State.Auth.NewestKey("osd")!.ExpiresMs, Ms(TicketGrants.OpenGrant(ServiceTickets.Grant(c.State, "client.vm", "osd", late).Data, vmKey).Expires));

        // Caps changed: the next ticket carries the new ones.
        c.Must(new AuthCaps("client.vm", Cluster.Caps(("mon", "allow r"), ("osd", "allow r"))));
        var narrower = TicketGrants.OpenGrant(ServiceTickets.Grant(c.State, "client.vm", "osd", c.Now).Data, vmKey);
        var id2 = verifier.Verify(narrower.Ticket, Tickets.Authenticator(narrower.SessionKey, c.Now), c.Now);
        Assert.False(Authorizer.IsAllowed(id2.Caps, "osd", Access.Write, "vm"));
    }
}
