using System.Globalization;
using Appliance.Platform.Native;

// appliance-locker FILE: opens FILE read-write (creating it) and answers one line per command read from stdin:
//   lock rd|wr|un START LEN    fcntl F_SETLK   → "ok" or "err ERRNO"
//   lockw rd|wr START LEN      fcntl F_SETLKW  → "ok" or "err ERRNO" (waits)
//   test rd|wr START LEN       fcntl F_GETLK   → "unlck" or "rd|wr START LEN PID"
//   flock sh|ex|un [nb]        flock(2)        → "ok" or "err ERRNO"
//   close                      close(2) of the file (its POSIX locks go) → "ok"
// LEN 0 is "to the end of the file". It prints "ready PID" first and exits at the end of stdin.
if (args.Length != 1)
{
    Console.Error.WriteLine("usage: appliance-locker FILE");
    return 2;
}
var fd = Posix.open(args[0], Constants.O_RDWR | Constants.O_CREAT, 0x1A4);
Console.WriteLine($"ready {Environment.ProcessId}");
while (Console.ReadLine() is { } line)
{
    var w = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
    string answer;
    try
    {
        answer = w switch
        {
            ["lock" or "lockw" or "test", var type, var start, var len] => Fcntl(fd, w[0], type, start, len),
            ["flock", var op, .. var rest] => Flock(fd, op, rest is ["nb"]),
            ["close"] => Close(ref fd),
            _ => "err usage",
        };
    }
    catch (PlatformException e)
    {
        answer = $"err {e.Errno}";
    }
    Console.WriteLine(answer);
}
return 0;

static string Fcntl(int fd, string cmd, string type, string start, string len)
{
    var l = new PosixLock
    {
        l_type = type switch { "rd" => 0, "wr" => 1, "un" => 2, _ => throw new PlatformException("type", 22, null) },
        l_start = long.Parse(start, CultureInfo.InvariantCulture),
        l_len = long.Parse(len, CultureInfo.InvariantCulture),
    };
    Posix.fcntl_lock(fd, cmd switch { "lock" => Posix.F_SETLK, "lockw" => Posix.F_SETLKW, _ => Posix.F_GETLK }, ref l);
    if (cmd != "test")
    {
        return "ok";
    }
    return l.l_type == 2 ? "unlck" : $"{(l.l_type == 0 ? "rd" : "wr")} {l.l_start} {l.l_len} {l.l_pid}";
}

static string Flock(int fd, string op, bool nonBlocking)
{
    const int LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;
    var operation = op switch { "sh" => LOCK_SH, "ex" => LOCK_EX, "un" => LOCK_UN, _ => throw new PlatformException("op", 22, null) };
    Posix.flock(fd, operation | (nonBlocking ? LOCK_NB : 0));
    return "ok";
}

static string Close(ref int fd)
{
    Posix.close(fd);
    fd = -1;
    return "ok";
}
