import { describe, expect, it } from 'vitest';
import { bearerMatches, methodLabel, oneOf, redisInfoFields, routeLabel, statusClass } from '../../app/metrics/metrics.models.js';

describe('metric labels', () => {
  it('map anything onto a small fixed set', () => {
    expect(methodLabel('GET')).toBe('GET');
    expect(methodLabel('PROPFIND')).toBe('other');
    expect(methodLabel(undefined)).toBe('other');
    expect(statusClass(204)).toBe('2xx');
    expect(statusClass(599)).toBe('5xx');
    expect(statusClass(99)).toBe('other');
    expect(statusClass('500')).toBe('other');
    expect(oneOf(['burned', 'deleted'] as const, 'deleted')).toBe('deleted');
    expect(oneOf(['burned', 'deleted'] as const, 'toString')).toBe('other');
  });

  it('take route templates and refuse anything that could carry a key or an id', () => {
    expect(routeLabel('/download/:key')).toBe('/download/:key');
    expect(routeLabel('*')).toBe('*');
    expect(routeLabel('/download/apple banana')).toBe('other');
    expect(routeLabel(`/${'a'.repeat(80)}`)).toBe('other');
    expect(routeLabel('/x?key=1')).toBe('other');
  });
});

describe('the metrics bearer token', () => {
  const token = 'tok-0123456789abcdef';
  it('matches only the whole token, after "Bearer" in any case', () => {
    expect(bearerMatches(`Bearer ${token}`, token)).toBe(true);
    expect(bearerMatches(`bearer   ${token}  `, token)).toBe(true);
    for (const header of [
      undefined,
      '',
      'Bearer',
      `Bearer ${token}x`,
      `Bearer ${token.slice(1)}`,
      `Basic ${token}`,
      token,
      `Bearer ${token} extra`,
    ]) {
      expect(bearerMatches(header, token), String(header)).toBe(false);
    }
  });
});

describe('Redis INFO', () => {
  it('reads name:value lines and skips sections', () => {
    expect(redisInfoFields('# Memory\r\nused_memory:1024\r\nmaxmemory:0\r\n\r\n')).toEqual({ used_memory: '1024', maxmemory: '0' });
  });
});
