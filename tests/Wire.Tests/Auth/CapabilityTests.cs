using Appliance.Wire.Auth;

namespace Appliance.Wire.Tests.Auth;

public sealed class CapabilityTests
{
    private static EntityCaps Caps(params (string Service, string Cap)[] caps) =>
        new(caps.ToDictionary(c => c.Service, c => c.Cap));

    [Fact]
    public void Allow_r_grants_reads_and_denies_writes()
    {
        var caps = Caps(("mon", "allow r"));
        Assert.True(Authorizer.IsAllowed(caps, "mon", Access.Read));
        Assert.False(Authorizer.IsAllowed(caps, "mon", Access.Write));
        Assert.False(Authorizer.IsAllowed(caps, "osd", Access.Read)); // no caps for a service = nothing
    }

    [Fact]
    public void A_pool_restriction_applies_to_that_pool_only()
    {
        var caps = Caps(("osd", "allow rw pool=vm"));
        Assert.True(Authorizer.IsAllowed(caps, "osd", Access.Read | Access.Write, "vm"));
        Assert.False(Authorizer.IsAllowed(caps, "osd", Access.Read, "backups"));
        Assert.False(Authorizer.IsAllowed(caps, "osd", Access.Read)); // an op on no particular pool
        Assert.False(Authorizer.IsAllowed(caps, "osd", Access.Execute, "vm"));
    }

    [Fact]
    public void Read_only_osd_caps_deny_writes_everywhere()
    {
        var caps = Caps(("osd", "allow r"));
        Assert.True(Authorizer.IsAllowed(caps, "osd", Access.Read, "vm"));
        var e = Assert.Throws<NotAuthorizedException>(() => Authorizer.Demand("client.ro", caps, "osd", Access.Write, "vm"));
        Assert.Contains("client.ro may not write on osd pool vm", e.Message);
    }

    [Fact]
    public void Allow_star_grants_everything_on_its_service()
    {
        var caps = Caps(("mon", "allow *"), ("osd", "allow *"));
        Assert.True(Authorizer.IsAllowed(caps, "osd", Access.All, "anything"));
        Assert.True(Authorizer.IsAllowed(caps, "mon", Access.All));
        Assert.False(Authorizer.IsAllowed(caps, "mgr", Access.Read));
    }

    [Fact]
    public void Grants_combine_across_clauses()
    {
        var caps = Caps(("osd", "allow r, allow w pool=vm; allow x pool=vm"));
        Assert.True(Authorizer.IsAllowed(caps, "osd", Access.All, "vm"));
        Assert.False(Authorizer.IsAllowed(caps, "osd", Access.Write, "other"));
        Assert.Equal("allow r, allow w pool=vm, allow x pool=vm", ServiceCaps.Parse("allow r, allow w pool=vm; allow x pool=vm").ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("permit r")]
    [InlineData("allow")]
    [InlineData("allow q")]
    [InlineData("allow rr")]
    [InlineData("allow r namespace=x")]
    [InlineData("allow r pool=a pool=b")]
    public void Malformed_caps_are_refused_with_a_message(string text)
    {
        var e = Assert.Throws<CapabilityFormatException>(() => ServiceCaps.Parse(text));
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
    }
}
