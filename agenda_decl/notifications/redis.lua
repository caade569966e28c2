-- The Lua of the Redis notification channel (read by ``redis.py``).

-- publish_many --
-- ARGV: channel, payload, channel, payload, ... (no prefix: this one runs on the channel's
-- client). Publishes them in order with one command.
for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end
return 0
