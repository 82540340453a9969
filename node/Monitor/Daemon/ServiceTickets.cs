using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Wire.Auth;

namespace Appliance.Monitor.Daemon;

/// <summary>
/// The monitors' side of cephx-style tickets. A client authenticated with its key asks for a ticket to a service
/// (<see cref="MonQuery.ServiceTicket"/>): it gets one sealed under the service's newest rotating key
/// (<see cref="AuthDb.ServiceKeys"/>), carrying its capabilities as the auth database holds them now and a fresh
/// session key; that session key comes sealed under the client's own key, so only the client can use the ticket,
/// whatever the connection's mode. A service's daemon (`osd.N` for `osd`) asks for the service's keys
/// (<see cref="MonQuery.ServiceKeys"/>), sealed under its own key, to verify the tickets it is shown. The leader
/// rotates the keys (<see cref="ServiceKeyRotate"/>); the answers come from the leader under its lease, like every
/// read. The bytes of both answers are <see cref="TicketGrants"/>' (node/Maps), which clients open.
/// </summary>
public static class ServiceTickets
{
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
        return new MonReply(MonReplyStatus.Ok, 0, $"{service} ticket for {who} until {issued.Expires:u}", Data: TicketGrants.SealGrant(issued, entity.Key));
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
        return new MonReply(MonReplyStatus.Ok, 0, $"{keys.Count} {service} service key(s)", Data: TicketGrants.SealKeys(service, keys, entity.Key));
    }
}
