using Appliance.Monitor.Maps;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Daemon;

/// <summary>
/// The monitors' side of cephx-style tickets. A client authenticated with its key asks for a ticket to a service
/// (<see cref="MonQuery.ServiceTicket"/>): it gets one sealed under the service's newest rotating key
/// (<see cref="AuthDb.ServiceKeys"/>), carrying its capabilities as the auth database holds them now and a fresh
/// session key; that session key comes sealed under the client's own key, so only the client can use the ticket,
/// whatever the connection's mode. A service's daemon (`osd.N` for `osd`) asks for the service's keys
/// (<see cref="MonQuery.ServiceKeys"/>), sealed under its own key, to verify the tickets it is shown. The leader
/// rotates the keys (<see cref="ServiceKeyRotate"/>); the answers come from the leader under its lease, like every
/// read.
/// </summary>
public static class ServiceTickets
{
    private const byte Version = 1;
    private const string SessionKeyPurpose = "ticket session key";
    private const string KeysPurpose = "service keys";

    /// <summary>A ticket for <paramref name="who"/> to <paramref name="service"/> (the monitor's answer).</summary>
    public static MonReply Grant(ClusterState state, string who, string service, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (!AuthDb.TicketServices.Contains(service))
        {
            return new MonReply(MonReplyStatus.Invalid, 0, $"no tickets are issued for service '{service}'; only for {string.Join(", ", AuthDb.TicketServices)}");
        }
        if (state.Auth.Find(who) is not { } entity)
        {
            return new MonReply(MonReplyStatus.Failed, (int)MonErrorCode.NotFound, $"{who} is not in the auth database; tickets are for its entities");
        }
        var ttl = state.Auth.NewestKey(service) is { } newest
            ? TimeSpan.FromMilliseconds(Math.Min(AuthDb.TicketTtl.TotalMilliseconds, newest.ExpiresMs - now.ToUnixTimeMilliseconds()))
            : TimeSpan.Zero;
        if (ttl <= TimeSpan.Zero)
        {
            return new MonReply(MonReplyStatus.Failed, (int)MonErrorCode.Refused, $"the {service} service has no current key yet (the leader rotates one in within seconds); try again");
        }
        var issued = Tickets.Issue(state.Auth.SecretsOf(service), who, entity.ParsedCaps(), now, ttl);
        using var w = new WireWriter();
        var m = w.BeginStruct(Version, 1);
        w.WriteBytes(issued.Ticket);
        w.WriteBytes(SecretBox.Seal(entity.Key, SessionKeyPurpose, issued.SessionKey));
        w.WriteI64(issued.Expires.ToUnixTimeMilliseconds());
        w.EndStruct(m);
        return new MonReply(MonReplyStatus.Ok, 0, $"{service} ticket for {who} until {issued.Expires:u}", Data: w.ToArray());
    }

    /// <summary>The client's side: the ticket, with its session key opened with the client's key.</summary>
    public static IssuedTicket OpenGrant(ReadOnlySpan<byte> data, Secret key)
    {
        var r = new WireReader(data);
        var s = r.BeginStruct(Version, "ticket grant");
        var ticket = r.ReadBytes(16 << 10).ToArray();
        var sessionKey = SecretBox.Open(key, SessionKeyPurpose, r.ReadBytes(256));
        var expires = DateTimeOffset.FromUnixTimeMilliseconds(r.ReadI64());
        r.EndStruct(s);
        r.ExpectEnd("ticket grant");
        return new IssuedTicket(ticket, sessionKey, expires);
    }

    /// <summary>The keys of <paramref name="service"/> for one of its daemons (the monitor's answer).</summary>
    public static MonReply GrantKeys(ClusterState state, string who, string service)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (!AuthDb.TicketServices.Contains(service))
        {
            return new MonReply(MonReplyStatus.Invalid, 0, $"'{service}' has no rotating keys; only {string.Join(", ", AuthDb.TicketServices)}");
        }
        if (!who.StartsWith(service + ".", StringComparison.Ordinal) || state.Auth.Find(who) is not { } entity)
        {
            return new MonReply(MonReplyStatus.Denied, 0, $"{who} may not have the {service} service keys: only the service's own daemons ({service}.N in the auth database) get them");
        }
        var keys = state.Auth.ServiceKeys.GetValueOrDefault(service) ?? [];
        using var plain = new WireWriter();
        plain.WriteU32((uint)keys.Count);
        foreach (var k in keys)
        {
            k.Encode(plain);
        }
        using var w = new WireWriter();
        var m = w.BeginStruct(Version, 1);
        w.WriteString(service);
        w.WriteBytes(SecretBox.Seal(entity.Key, KeysPurpose + "|" + service, plain.WrittenSpan));
        w.EndStruct(m);
        return new MonReply(MonReplyStatus.Ok, 0, $"{keys.Count} {service} service key(s)", Data: w.ToArray());
    }

    /// <summary>The daemon's side: the service's keys, opened with the daemon's key, ready for a
    /// <see cref="TicketVerifier"/>.</summary>
    public static ServiceSecrets OpenKeys(ReadOnlySpan<byte> data, Secret key)
    {
        var r = new WireReader(data);
        var s = r.BeginStruct(Version, "service keys grant");
        var service = r.ReadString(64);
        var plain = SecretBox.Open(key, KeysPurpose + "|" + service, r.ReadBytes(64 << 10));
        r.EndStruct(s);
        r.ExpectEnd("service keys grant");
        var p = new WireReader(plain);
        var n = MapCodec.ReadCount(ref p, 8, "service keys");
        var secrets = new ServiceSecrets(service);
        for (var i = 0; i < n; i++)
        {
            var k = ServiceKey.Decode(ref p);
            secrets.Add(new ServiceSecret(k.Id, k.Key, DateTimeOffset.FromUnixTimeMilliseconds(k.ExpiresMs)));
        }
        p.ExpectEnd("service keys");
        return secrets;
    }
}
