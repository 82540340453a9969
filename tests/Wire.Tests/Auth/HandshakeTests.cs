using Appliance.Wire.Auth;
using Appliance.Wire.Codec;

namespace Appliance.Wire.Tests.Auth;

public sealed class HandshakeTests
{
    private static readonly Secret AdminKey = Secret.Generate();

    private static Secret? Lookup(string entity) => entity == "client.admin" ? AdminKey : null;

    private static (AuthenticatedSession Client, AuthenticatedSession Server) Run(string entity, Secret clientKey, Func<string, Secret?> lookup)
    {
        var client = new HandshakeClient(entity, clientKey);
        var server = new HandshakeServer(lookup);
        var challenge = server.Challenge(client.Hello());
        var proof = client.Answer(challenge);
        var (serverProof, serverSession) = server.Verify(proof);
        return (client.Complete(serverProof), serverSession);
    }

    [Fact]
    public void Both_sides_authenticate_and_agree_on_a_fresh_session_key()
    {
        var (c, s) = Run("client.admin", AdminKey, Lookup);
        Assert.Equal(c.SessionKey, s.SessionKey);
        Assert.Equal("client.admin", s.Entity);
        var (c2, _) = Run("client.admin", AdminKey, Lookup);
        Assert.NotEqual(c.SessionKey, c2.SessionKey);
    }

    [Fact]
    public void The_secret_never_crosses_the_wire()
    {
        var client = new HandshakeClient("client.admin", AdminKey);
        var server = new HandshakeServer(Lookup);
        var hello = client.Hello();
        var challenge = server.Challenge(hello);
        var proof = client.Answer(challenge);
        var (serverProof, _) = server.Verify(proof);
        var secretBytes = Convert.FromBase64String(AdminKey.ToBase64());
        foreach (var message in new[] { hello, challenge, proof, serverProof })
        {
            Assert.True(message.AsSpan().IndexOf(secretBytes.AsSpan(0, 8)) < 0);
        }
    }

    [Fact]
    public void A_wrong_secret_is_refused()
    {
        var e = Assert.Throws<AuthenticationException>(() => Run("client.admin", Secret.Generate(), Lookup));
        Assert.Contains("wrong key", e.Message);
    }

    [Fact]
    public void An_unknown_entity_is_refused()
    {
        var e = Assert.Throws<AuthenticationException>(() => Run("client.mallory", AdminKey, Lookup));
        Assert.Contains("unknown entity client.mallory", e.Message);
    }

    [Fact]
    public void A_server_that_does_not_know_the_key_is_refused_by_the_client()
    {
        var impostorKey = Secret.Generate();
        var client = new HandshakeClient("client.admin", AdminKey);
        var impostor = new HandshakeServer(_ => impostorKey);
        var challenge = impostor.Challenge(client.Hello());
        var proof = client.Answer(challenge);
        Assert.Throws<AuthenticationException>(() => impostor.Verify(proof));
        // Even if the impostor skips verification and answers with its own proof, the client refuses it.
        var fakeProof = Handshake.Proof(impostorKey, "server", "client.admin", new byte[32], challenge);
        Assert.Throws<AuthenticationException>(() => client.Complete(fakeProof));
    }

    [Fact]
    public void A_recorded_proof_does_not_work_against_a_new_challenge()
    {
        var client = new HandshakeClient("client.admin", AdminKey);
        var server1 = new HandshakeServer(Lookup);
        var hello = client.Hello();
        var proof = client.Answer(server1.Challenge(hello));
        var server2 = new HandshakeServer(Lookup);
        server2.Challenge(hello);
        Assert.Throws<AuthenticationException>(() => server2.Verify(proof));
    }

    [Fact]
    public void A_malformed_hello_is_a_format_error()
    {
        var server = new HandshakeServer(Lookup);
        Assert.Throws<WireFormatException>(() => server.Challenge([1, 2, 3]));
    }
}
