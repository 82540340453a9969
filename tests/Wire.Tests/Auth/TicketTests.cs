using Appliance.Wire.Auth;

namespace Appliance.Wire.Tests.Auth;

public sealed class TicketTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 22, 12, 0, 0, TimeSpan.Zero);
    private static readonly EntityCaps VmCaps = new(new Dictionary<string, string> { ["osd"] = "allow rw pool=vm" });

    private static (ServiceSecrets Osd, TicketVerifier Verifier) Osd()
    {
        var secrets = new ServiceSecrets("osd");
        secrets.Rotate(Now, TimeSpan.FromHours(2));
        return (secrets, new TicketVerifier(secrets, TimeSpan.FromMinutes(5)));
    }

    [Fact]
    public void A_valid_ticket_names_the_entity_and_carries_its_caps()
    {
        var (osd, verifier) = Osd();
        var issued = Tickets.Issue(osd, "client.vm", VmCaps, Now, TimeSpan.FromHours(1));
        var id = verifier.Verify(issued.Ticket, Tickets.Authenticator(issued.SessionKey, Now), Now);
        Assert.Equal("client.vm", id.Entity);
        Assert.True(Authorizer.IsAllowed(id.Caps, "osd", Access.Write, "vm"));
        Assert.False(Authorizer.IsAllowed(id.Caps, "osd", Access.Write, "other"));
    }

    [Fact]
    public void An_expired_ticket_is_refused()
    {
        var (osd, verifier) = Osd();
        var issued = Tickets.Issue(osd, "client.vm", VmCaps, Now, TimeSpan.FromMinutes(10));
        var later = Now.AddMinutes(11);
        var e = Assert.Throws<AuthenticationException>(() => verifier.Verify(issued.Ticket, Tickets.Authenticator(issued.SessionKey, later), later));
        Assert.Contains("expired", e.Message);
    }

    [Fact]
    public void A_replayed_authenticator_is_refused()
    {
        var (osd, verifier) = Osd();
        var issued = Tickets.Issue(osd, "client.vm", VmCaps, Now, TimeSpan.FromHours(1));
        var auth = Tickets.Authenticator(issued.SessionKey, Now);
        verifier.Verify(issued.Ticket, auth, Now);
        var e = Assert.Throws<AuthenticationException>(() => verifier.Verify(issued.Ticket, auth, Now.AddSeconds(1)));
        Assert.Contains("replay", e.Message);
        verifier.Verify(issued.Ticket, Tickets.Authenticator(issued.SessionKey, Now), Now); // a fresh one is fine
    }

    [Fact]
    public void A_ticket_for_another_service_is_refused()
    {
        var (_, osdVerifier) = Osd();
        var mds = new ServiceSecrets("mds");
        mds.Rotate(Now, TimeSpan.FromHours(2));
        var issued = Tickets.Issue(mds, "client.vm", VmCaps, Now, TimeSpan.FromHours(1));
        Assert.Throws<AuthenticationException>(() => osdVerifier.Verify(issued.Ticket, Tickets.Authenticator(issued.SessionKey, Now), Now));
    }

    [Fact]
    public void A_ticket_for_another_service_sealed_with_a_shared_secret_is_still_refused()
    {
        // Even if two services were (wrongly) given the same secret, the service name inside the ticket decides.
        var shared = new ServiceSecret(1, Secret.Generate(), Now.AddHours(2));
        var mon = new ServiceSecrets("mon");
        mon.Add(shared);
        var osd = new ServiceSecrets("osd");
        osd.Add(shared);
        var issued = Tickets.Issue(mon, "client.vm", VmCaps, Now, TimeSpan.FromHours(1));
        var e = Assert.Throws<AuthenticationException>(() =>
            new TicketVerifier(osd, TimeSpan.FromMinutes(5)).Verify(issued.Ticket, Tickets.Authenticator(issued.SessionKey, Now), Now));
        Assert.Contains("is for service mon, not osd", e.Message);
    }

    [Fact]
    public void Rotation_keeps_old_tickets_valid_until_their_secret_expires()
    {
        var (osd, verifier) = Osd();
        var old = Tickets.Issue(osd, "client.vm", VmCaps, Now, TimeSpan.FromHours(1));
        osd.Rotate(Now.AddMinutes(30), TimeSpan.FromHours(2));
        var t = Now.AddMinutes(31);
        verifier.Verify(old.Ticket, Tickets.Authenticator(old.SessionKey, t), t);
        var fresh = Tickets.Issue(osd, "client.vm", VmCaps, t, TimeSpan.FromHours(1));
        Assert.NotEqual(BitConverter.ToUInt32(old.Ticket), BitConverter.ToUInt32(fresh.Ticket));
    }

    [Fact]
    public void A_tampered_ticket_or_a_wrong_session_key_is_refused()
    {
        var (osd, verifier) = Osd();
        var issued = Tickets.Issue(osd, "client.vm", VmCaps, Now, TimeSpan.FromHours(1));
        var tampered = (byte[])issued.Ticket.Clone();
        tampered[30] ^= 1;
        Assert.Throws<AuthenticationException>(() => verifier.Verify(tampered, Tickets.Authenticator(issued.SessionKey, Now), Now));
        Assert.Throws<AuthenticationException>(() => verifier.Verify(issued.Ticket, Tickets.Authenticator(new byte[32], Now), Now));
        Assert.Throws<AuthenticationException>(() => verifier.Verify(issued.Ticket[..10], Tickets.Authenticator(issued.SessionKey, Now), Now));
    }

    [Fact]
    public void A_service_that_refetches_its_keys_verifies_tickets_under_old_and_new_ones()
    {
        // The monitors' copy rotates; the daemon's copy gets what it fetches added, the same ids more than once.
        var monitors = new ServiceSecrets("osd");
        var first = monitors.Rotate(Now, TimeSpan.FromHours(2));
        var daemon = new ServiceSecrets("osd");
        daemon.Add(first);
        var verifier = new TicketVerifier(daemon, TimeSpan.FromMinutes(5));
        var old = Tickets.Issue(monitors, "client.vm", VmCaps, Now, TimeSpan.FromHours(1));
        var second = monitors.Rotate(Now.AddMinutes(30), TimeSpan.FromHours(2));
        var fresh = Tickets.Issue(monitors, "client.vm", VmCaps, Now.AddMinutes(30), TimeSpan.FromHours(1));
        Assert.Throws<AuthenticationException>(() => verifier.Verify(fresh.Ticket, Tickets.Authenticator(fresh.SessionKey, Now), Now));
        daemon.Add(first);
        daemon.Add(second);
        Assert.Equal(second.Id, daemon.Current.Id);
        Assert.Equal("client.vm", verifier.Verify(old.Ticket, Tickets.Authenticator(old.SessionKey, Now), Now).Entity);
        Assert.Equal("client.vm", verifier.Verify(fresh.Ticket, Tickets.Authenticator(fresh.SessionKey, Now), Now).Entity);
    }
}
